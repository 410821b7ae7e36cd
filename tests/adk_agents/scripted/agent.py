"""A scripted ADK agent: no model, no network; its user message says what to do.

``"delay=100 events=4 gap=20"``: wait 100 ms, then send 4 text events 20 ms apart (the last one
final, the others ``partial``); ``"fail"`` (with or without the knobs) raises after the first
event, which ADK turns into an in-stream error. Unknown words are ignored, so sseprobe's default
message ("test") gets the defaults.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from google.adk.agents import BaseAgent
from google.adk.agents.invocation_context import InvocationContext
from google.adk.events import Event
from google.genai import types

_DEFAULTS = {"delay": 100, "events": 4, "gap": 20}


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
        knobs, fail = parse(_text_of(ctx))
        await asyncio.sleep(knobs["delay"] / 1000.0)
        count = max(1, knobs["events"])
        for i in range(count):
            if i:
                await asyncio.sleep(knobs["gap"] / 1000.0)
            if fail and i == 1:
                raise RuntimeError("scripted failure")
            last = i == count - 1 and not fail
            yield Event(
                invocation_id=ctx.invocation_id,
                author=self.name,
                branch=ctx.branch,
                partial=not last,
                content=types.Content(role="model", parts=[types.Part(text=f"chunk {i}")]),
            )
        if fail:  # a one-event run fails after its event
            raise RuntimeError("scripted failure")


root_agent = ScriptedAgent(name="scripted", description="Sleeps and yields text events; no model.")
