"""A scripted ADK agent: no model, no network; its user message says what to do.

``"delay=100 events=4 gap=20"``: wait 100 ms, then send 4 text events 20 ms apart (the last one
final, the others ``partial``). ``"fail"`` (with or without the knobs) raises after the first event
(before any with ``events=1``), which ADK turns into an in-stream error. ``"peak"`` answers
``peak=N``: the most runs this server had in flight at once since the last ``"peak"``, so a test
can see the load it was sent. Unknown words are ignored: sseprobe's default message ("test") gets
the defaults.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from google.adk.agents import BaseAgent
from google.adk.agents.invocation_context import InvocationContext
from google.adk.events import Event
from google.genai import types

_DEFAULTS = {"delay": 100, "events": 4, "gap": 20}
_runs = {"now": 0, "peak": 0}  # runs in flight in this server process, and the most since asked


def parse(text: str) -> tuple[dict[str, int], bool]:
    """The knobs of a message (``key=int`` words) and whether it asks to fail."""
    knobs = dict(_DEFAULTS)
    fail = False
    for word in text.split():
        key, eq, value = word.partition("=")
        if eq and key in knobs and value.isdigit():
            knobs[key] = int(value)
        elif word == "fail":
            fail = True
    return knobs, fail


def _text_of(ctx: InvocationContext) -> str:
    content = ctx.user_content
    if content is None or not content.parts:
        return ""
    return content.parts[0].text or ""


class ScriptedAgent(BaseAgent):
    """Sleeps and yields text events as its message asks: a stand-in for an LLM agent."""

    async def _run_async_impl(self, ctx: InvocationContext) -> AsyncGenerator[Event, None]:
        text = _text_of(ctx)
        if text.strip() == "peak":
            peak, _runs["peak"] = _runs["peak"], 0
            yield self._event(ctx, f"peak={peak}", partial=False)
            return
        knobs, fail = parse(text)
        count = max(1, knobs["events"])
        _runs["now"] += 1
        _runs["peak"] = max(_runs["peak"], _runs["now"])
        try:
            await asyncio.sleep(knobs["delay"] / 1000.0)
            for i in range(count - 1):
                yield self._event(ctx, f"chunk {i}", partial=True)
                if fail:
                    raise RuntimeError("scripted failure")
                await asyncio.sleep(knobs["gap"] / 1000.0)
        finally:
            _runs["now"] -= 1  # before the final event: a client may start its next run on seeing it
        if fail:  # a one-event run fails without any event
            raise RuntimeError("scripted failure")
        yield self._event(ctx, f"chunk {count - 1}", partial=False)

    def _event(self, ctx: InvocationContext, text: str, partial: bool) -> Event:
        return Event(
            invocation_id=ctx.invocation_id,
            author=self.name,
            branch=ctx.branch,
            partial=partial,
            content=types.Content(role="model", parts=[types.Part(text=text)]),
        )


root_agent = ScriptedAgent(name="scripted", description="Sleeps and yields text events; no model.")
