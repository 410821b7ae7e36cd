"""The built-in target's ``vana-real`` profile: what the real backend was seen doing on the wire.

The service's source reads one way and behaves another; a prober tuned only on the first gets
its numbers wrong. This profile reproduces the behaviour measured on the real backend:

- ADK's own routes answer session creation and ``POST /run_sse`` ahead of the backend's
  flag-gated proxy: the flag never shows (no 501), streams end without ``event: done``, any
  app name is accepted, ``GET /list-apps`` answers ``["vana"]``.
- A canonical run opens with a content-less bookkeeping event (``actions.stateDelta`` only)
  at once; answer text (``partial: true`` events, then the final ``turnComplete`` one) starts
  after the model delay.
- A legacy run publishes ``agent_status`` "Processing request" when the POST arrives, replays
  up to 500 past events to a late subscriber, sends cumulative ``research_update`` content whose
  last update repeats the text, and masks a model failure as ``research_complete`` "Research
  completed." with no update at all (canonical sends the in-stream 503 error instead).
- A model limiter on the legacy path: ``legacy_model_limit`` runs per ``legacy_model_window_s``;
  a run beyond waits up to ``legacy_model_wait_s``, then ends with ``event: error`` "Rate limiter
  timeout". Canonical bypasses it.
- ``text/event-stream; charset=utf-8``, a ``Secure`` CSRF cookie on every response, and a
  ``/health`` whose dependencies hold a value (``project_id``), not only checks.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from functools import lru_cache

import orjson
from aiohttp import web

from ..verdict.schema import JSONObject
from ._app import RUN_LINGER_S, HealthBody, _Vana
from ._config import CohortCounters, CohortKnobs, TargetConfig
from ._parts import PROCESSING, VANA_APP, Run, chunk, legacy_fault, publish, sleep_until, unnamed

__all__ = ["VanaReal", "MODEL_503", "RATE_LIMITER_TIMEOUT"]

REAL_REPLAY = 500
_EVENT_STREAM = "text/event-stream; charset=utf-8"
_CANONICAL_HEADERS = {"Content-Type": _EVENT_STREAM}
_LEGACY_HEADERS = {"Content-Type": _EVENT_STREAM, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MODEL_503 = (
    "503 UNAVAILABLE. {'error': {'code': 503, 'message': 'The model is overloaded. Please try again later.', "
    "'status': 'UNAVAILABLE'}}"
)
RATE_LIMITER_TIMEOUT = "Rate limiter timeout: the model is busy, try again later"
_NO_ACTIONS: JSONObject = {"stateDelta": {}, "artifactDelta": {}, "requestedAuthConfigs": {}}


@lru_cache(maxsize=64)
def _answer_templates(total: int) -> tuple[bytes, ...]:
    """``total`` answer events (``partial: true`` chunks, then the final full text), cut before the
    ``timestamp``; ``@inv@``/``@id@`` stand for the invocation and event ids, as in the default profile."""
    out = []
    for i in range(total):
        final = i == total - 1
        event: JSONObject = {
            "content": {
                "parts": [{"text": "".join(map(chunk, range(total))) if final else chunk(i)}],
                "role": "model",
            },
            "partial": not final,
        }
        if final:
            event["turnComplete"] = True
            event["usageMetadata"] = {"promptTokenCount": 12, "candidatesTokenCount": 9 * total}
        event.update(invocationId="e-@inv@", author="research_agent", actions=_NO_ACTIONS, id="@id@")
        out.append(b"data: " + orjson.dumps(event)[:-1] + b',"timestamp":')
    return tuple(out)


def _frame(prefix: bytes) -> bytes:
    return prefix + repr(time.time()).encode() + b"}\n\n"  # the truth stamp, taken right before the write


class VanaReal(_Vana):
    """The real backend's observed behaviour on top of the default target's machinery."""

    replay = REAL_REPLAY
    flag_gates_run_sse = False  # ADK's /run_sse is registered first: the flag never answers
    legacy_headers = _LEGACY_HEADERS

    def __init__(self, config: TargetConfig) -> None:
        super().__init__(config)
        self.csrf_cookie += "; Secure"  # even over plain HTTP
        self.model_admitted: deque[float] = deque()  # loop times of legacy runs the limiter let in

    @property
    def adk_answers(self) -> bool:
        return True

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/list-apps", self.list_apps)]

    async def list_apps(self, request: web.Request) -> web.Response:
        return web.json_response([VANA_APP])

    async def set_csrf_cookie(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.add("Set-Cookie", self.csrf_cookie)

    def health_body(self) -> HealthBody:
        body = super().health_body()
        body["dependencies"]["project_id"] = "vana-dev-project"  # a value, not a check
        return body

    # -- the model: delay, failure, limiter -----------------------------------------------------

    def _model_delay_s(self, knobs: CohortKnobs) -> float:
        """Time to the first answer text: ``model_delay_ms``, the same constant for both flows (a
        scripted model), else the cohort's lognormal ``ttfe_ms``/``ttfe_spread``."""
        if self.config.model_delay_ms is not None:
            return self.config.model_delay_ms / 1000
        return self._ttfe_s(knobs)

    def _model_fails(self, counters: CohortCounters) -> bool:
        failed = bool(self.rng.random() < self.config.model_fail_rate)
        counters.model_failed += failed
        return failed

    async def _admit(self) -> float | None:
        """The legacy model limiter: seconds waited for a slot, or None when the wait ran out."""
        cfg, loop = self.config, asyncio.get_running_loop()
        if not cfg.legacy_model_limit:
            return 0.0
        begun = loop.time()
        give_up = begun + cfg.legacy_model_wait_s
        while True:
            now = loop.time()
            while self.model_admitted and now - self.model_admitted[0] >= cfg.legacy_model_window_s:
                self.model_admitted.popleft()
            if len(self.model_admitted) < cfg.legacy_model_limit:
                self.model_admitted.append(now)
                return now - begun
            if now >= give_up:
                return None
            await sleep_until(min(self.model_admitted[0] + cfg.legacy_model_window_s, give_up))

    # -- canonical: bookkeeping first, then the answer -------------------------------------------

    async def _stream_canonical(self, request: web.Request, knobs: CohortKnobs, t0: float) -> web.StreamResponse:
        counters = self.stats.canonical
        fault = self._stream_fault(knobs, counters)
        failed = self._model_fails(counters)
        first, gap = t0 + self._model_delay_s(knobs), knobs.gap_ms / 1000
        invocation = self._invocation()
        answers = [
            template.replace(b"@inv@", invocation).replace(b"@id@", invocation[:-4] + b"%04x" % (i + 1))
            for i, template in enumerate(_answer_templates(knobs.events))
        ]
        resp = web.StreamResponse(headers=_CANONICAL_HEADERS)
        await resp.prepare(request)
        try:
            await resp.write(self._bookkeeping(invocation))
            if failed:
                await sleep_until(first)
                await resp.write_eof(unnamed({"error": MODEL_503}))
                return resp
            for i, prefix in enumerate(answers[:1] if fault else answers):
                await sleep_until(first + i * gap)
                if fault is not None or i < len(answers) - 1:
                    await resp.write(_frame(prefix))
                else:  # ADK closes after the final event: no `done`
                    await resp.write_eof(_frame(prefix))
                    counters.completed += 1
            if fault is not None:
                await self._inject_canonical_fault(resp, fault, first + gap)
        except ConnectionResetError:
            pass  # the client went away
        return resp

    def _invocation(self) -> bytes:
        h = self.rng.bytes(16).hex()
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}".encode()

    def _bookkeeping(self, invocation: bytes) -> bytes:
        """The content-less event ADK sends before the model is called."""
        now = time.time()
        event = {
            "invocationId": "e-" + invocation.decode(),
            "author": "dispatcher_agent",
            "actions": {**_NO_ACTIONS, "stateDelta": {"dispatcher_agent_start_time": now}},
            "id": invocation.decode()[:-4] + "0000",
            "timestamp": now,
        }
        return unnamed(event)

    # -- legacy: status at the POST, limiter, masked failures, repeated text ---------------------

    async def _produce(self, sid: str, run: Run, knobs: CohortKnobs, t0: float) -> None:
        counters = self.stats.legacy
        try:
            publish(run, "agent_status", PROCESSING)  # on the POST, before the model is asked
            waited = await self._admit()
            if waited is None:
                counters.model_limited += 1
                publish(run, "error", {"error": RATE_LIMITER_TIMEOUT})
                return
            fault = self._stream_fault(knobs, counters)
            failed = self._model_fails(counters)
            first, gap = t0 + waited + self._model_delay_s(knobs), knobs.gap_ms / 1000
            await sleep_until(first)
            if failed:  # masked: a "completion" that delivered nothing
                publish(run, "research_complete", {"content": "Research completed.", "status": "completed"})
                counters.completed += 1
                return
            content = await self._updates(run, knobs.events, first, gap, fault)
            if content is None:
                return
            publish(run, "research_complete", {"content": content, "status": "completed"})
            counters.completed += 1
        finally:
            if not run.subscribers:
                asyncio.get_running_loop().call_later(RUN_LINGER_S, self._release, sid, run)

    async def _updates(self, run: Run, total: int, first: float, gap: float, fault: str | None) -> str | None:
        """Cumulative ``research_update`` events, the last repeating the whole text; None after a fault."""
        content = ""
        for i in range(total):
            await sleep_until(first + i * gap)
            content += chunk(i)
            if i == total - 1:
                content += content  # the server duplicates earlier text
            publish(run, "research_update", {"content": content})
            if fault is not None:
                await sleep_until(first + gap)
                legacy_fault(run, fault)
                return None
        return content
