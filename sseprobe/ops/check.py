"""Pre-deployment validation: health fields, the canonical flag seen from outside, one session per flow.

Returns results; printing and exit codes belong to the CLI.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import cast

import orjson

from .._config import FlowName, FlowOptions, Limits, Timeouts, TLSOptions
from .._outcomes import Outcome, SessionError
from .._record import SessionRecord
from .._redact import redact_url
from ..load.engine import make_client
from ..plan.resolve import split_credentials
from ..wire.body import MAX_STREAM_BODY
from ..wire.flows import Step
from ..wire.http import Transport
from ..wire.session import prepared_stream, run_session
from ..wire.sse import SSEDecoder

__all__ = ["CheckResult", "run_checks", "health_findings", "LEVELS"]

LEVELS = ("OK", "INFO", "WARN", "FAIL", "UNKNOWN")


@dataclass(frozen=True)
class CheckResult:
    name: str
    level: str  # one of LEVELS
    detail: str


def health_findings(body: object, optional: frozenset[str] = frozenset()) -> list[CheckResult]:
    """Judge a /health JSON body; tolerate the known shape variants and name every field that differs.
    ``optional``: dependencies allowed to be false (e.g. cloud_logging off in development)."""
    if not isinstance(body, dict):
        return [CheckResult("health", "FAIL", "body is not a JSON object")]
    out: list[CheckResult] = []
    status = body.get("status")
    out.append(
        CheckResult(
            "health.status",
            "OK" if status == "healthy" else "FAIL",
            f"status is {status!r}" + ("" if status == "healthy" else ", expected 'healthy'"),
        )
    )
    deps = body.get("dependencies")
    if not isinstance(deps, dict):
        out.append(CheckResult("health.dependencies", "WARN", "no 'dependencies' object in /health"))
    else:
        out.append(_dependencies(deps, optional))
    env = body.get("environment")
    if isinstance(env, dict):
        out.append(
            CheckResult(
                "health.environment",
                "INFO",
                f"{env.get('current')!r}, phase {env.get('phase')!r}, "
                f"migration_complete {env.get('migration_complete')!r} "
                "(an env-variable migration, not the stream rollout)",
            )
        )
    elif isinstance(env, str):
        out.append(CheckResult("health.environment", "INFO", f"{env!r} (plain-string shape, as with CI=true)"))
    else:
        out.append(CheckResult("health.environment", "INFO", "no 'environment' field"))
    return out


def _dependencies(deps: Mapping[str, object], optional: frozenset[str]) -> CheckResult:
    """True/false entries are checks and judged; any other value (``project_id: "..."``) is
    information about the deployment, shown as it is."""
    checks = {k: v for k, v in deps.items() if isinstance(v, bool)}
    down = [k for k, v in checks.items() if not v and k not in optional]
    allowed = [k for k, v in checks.items() if not v and k in optional]
    detail = f"not true: {', '.join(down)}" if down else f"all {len(checks) - len(allowed)} required true"
    if allowed:
        detail += f" (optional and off: {', '.join(allowed)})"
    values = [f"{k}={_shown(v)}" for k, v in deps.items() if not isinstance(v, bool)]
    if values:
        detail += f"; values: {', '.join(values)}"
    return CheckResult("health.dependencies", "WARN" if down else "OK", detail)


def _shown(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def _get_health(
    http: Transport, base: str, headers: dict[str, str], optional: frozenset[str], tls: TLSOptions
) -> list[CheckResult]:
    t0 = time.perf_counter()
    async with await http.request("GET", f"{base}/health", headers=headers, tls=tls) as resp:
        raw = await resp.read()
        ms = (time.perf_counter() - t0) * 1000
        if resp.status != 200:
            return [CheckResult("health", "FAIL", f"GET /health answered HTTP {resp.status}")]
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return [CheckResult("health", "FAIL", "GET /health did not answer JSON")]
    return [CheckResult("health", "OK", f"GET /health 200 in {ms:.0f} ms"), *health_findings(body, optional)]


_FLAG_OFF = CheckResult("canonical.flag", "INFO", "OFF (POST /run_sse answers 501)")


async def _flag_state(http: Transport, opts: FlowOptions, headers: dict[str, str], timeout: float) -> CheckResult:
    """The canonical flag as far as it shows from outside.

    Only two answers prove anything: 501 from ``/run_sse`` (off), and a canonical stream that ends
    with ``event: done``, which only the backend's flag-gated proxy sends (on). ADK's own
    ``/run_sse`` answers whatever the flag says when it is routed first, so a 404 for an unknown
    session, or a stream that just closes, leaves the flag not visible: never "on" by elimination.
    """
    base = opts.url.rstrip("/")
    status = await _unknown_session_status(http, base, opts.app, headers, opts.tls)
    if status == 501:
        return _FLAG_OFF
    if status not in (200, 404):
        return CheckResult("canonical.flag", "WARN", f"unknown: POST /run_sse answered HTTP {status}")
    timeouts = Timeouts(connect=timeout, idle=timeout, session=timeout)
    try:
        step, stream_headers = await prepared_stream(http, replace(opts, flow="canonical"), timeouts, Limits())
    except SessionError as err:
        return CheckResult("canonical.flag", "WARN", f"unknown: the probe session could not be created ({err})")
    stream_status, end = await _stream_end(http, step, stream_headers, opts.tls)
    if stream_status != 200:
        return CheckResult("canonical.flag", "WARN", f"unknown: the probe stream answered HTTP {stream_status}")
    if end == "done":
        return CheckResult("canonical.flag", "INFO", "ON (the canonical stream ends with the backend's event: done)")
    if end != "closed":  # a failed run shows nothing about the route that served it
        return CheckResult("canonical.flag", "WARN", f"unknown: the probe stream ended with an {end}")
    why = ["the stream ends without event: done", *await _adk_route_signs(http, base, headers, opts.tls)]
    return CheckResult(
        "canonical.flag",
        "INFO",
        f"not-visible from outside: /run_sse is answered by ADK's own route, which ignores the flag ({'; '.join(why)})",
    )


async def _unknown_session_status(
    http: Transport, base: str, app: str, headers: dict[str, str], tls: TLSOptions
) -> int:
    """POST /run_sse for a session that does not exist: 501 is the flag off; anything else says little."""
    body = {
        "appName": app,
        "userId": "sseprobe-check",
        "sessionId": f"check-{uuid.uuid4().hex}",
        "newMessage": {"role": "user", "parts": [{"text": "flag probe"}]},
        "streaming": True,
    }
    json_headers = {**headers, "Content-Type": "application/json"}
    async with await http.request(
        "POST", f"{base}/run_sse", data=orjson.dumps(body), headers=json_headers, tls=tls
    ) as resp:
        return resp.status  # the body is not read: the connection is closed, never reused


async def _stream_end(http: Transport, step: Step, headers: dict[str, str], tls: TLSOptions) -> tuple[int, str]:
    """(status, how one canonical stream ended: "done", "error: ..." or "closed"), read to its end."""
    request_headers = {**headers, "Accept": "text/event-stream", "Content-Type": "application/json"}
    async with await http.request(
        "POST", step.url, data=step.json_bytes(), headers=request_headers, tls=tls, max_body=MAX_STREAM_BODY
    ) as resp:
        if resp.status != 200:
            return resp.status, "closed"
        decoder = SSEDecoder()
        end = ["closed"]

        def sink(chunk: bytes) -> bool:
            for event in decoder.feed(chunk):
                if event.event == "done":
                    end[0] = "done"
                    return True
                if event.event == "error" or _error_data(event.data):
                    end[0] = f"error: {_shown(event.data)}"
                    return True
            return False

        await resp.consume(sink)
        return resp.status, end[0]


def _error_data(data: str) -> bool:
    """An unnamed frame carrying an in-stream error (a JSON object with an "error" key)."""
    if '"error"' not in data:
        return False
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(body, dict) and bool(body.get("error"))


async def _adk_route_signs(http: Transport, base: str, headers: dict[str, str], tls: TLSOptions) -> list[str]:
    """What else shows that ADK's routes are in front: its app list, and sessions for any app name."""
    signs = []
    async with await http.request("GET", f"{base}/list-apps", headers=headers, tls=tls) as resp:
        if resp.status == 200:
            signs.append(f"GET /list-apps answers {_shown(orjson.loads(await resp.read()))}")
    bogus = f"sseprobe-no-such-app-{uuid.uuid4().hex[:8]}"
    json_headers = {**headers, "Content-Type": "application/json"}
    url = f"{base}/apps/{bogus}/users/sseprobe-check/sessions"
    async with await http.request("POST", url, data=b"{}", headers=json_headers, tls=tls) as resp:
        if resp.status == 200:
            signs.append("a session for an unknown app name is created")
    return signs


async def _one_session(http: Transport, opts: FlowOptions, timeout: float) -> CheckResult:
    rec = SessionRecord(opts.flow, 0, scheduled=time.perf_counter())
    timeouts = Timeouts(connect=timeout, idle=timeout, session=timeout)
    await run_session(http, opts, timeouts, Limits(), rec)
    name = f"{opts.flow}.session"
    if rec.outcome == Outcome.OK:
        return CheckResult(
            name, "OK", f"completed in {rec.completion_ms:.0f} ms, TTFE {rec.ttfe_ms:.0f} ms, {rec.events} events"
        )
    return CheckResult(name, "FAIL", f"{rec.outcome}: {rec.error or ''}".strip())


async def run_checks(
    opts: FlowOptions, flows: tuple[str, ...], timeout: float = 10.0, optional: frozenset[str] = frozenset()
) -> list[CheckResult]:
    url, auth = split_credentials(opts.url)  # credentials travel as the header they stand for, never in text
    if auth is not None:
        opts = replace(opts, url=url, headers=(*opts.headers, auth))
    base = opts.url.rstrip("/")
    headers = dict(opts.headers)
    timeouts = Timeouts(connect=timeout, idle=timeout, session=timeout)
    results: list[CheckResult] = []
    async with make_client(timeouts, Limits(), time.perf_counter) as http:
        try:
            async with asyncio.timeout(timeout):
                results += await _get_health(http, base, headers, optional, opts.tls)
        except (SessionError, OSError, TimeoutError) as exc:
            why = str(exc) if isinstance(exc, SessionError) else type(exc).__name__  # ours name no secret
            return [CheckResult("health", "UNKNOWN", f"cannot reach {redact_url(base)}/health: {why}")]
        flag_off = False
        if "canonical" in flows:
            try:
                async with asyncio.timeout(timeout):
                    flag = await _flag_state(http, opts, headers, timeout)
                results.append(flag)
                flag_off = flag is _FLAG_OFF
            except (SessionError, OSError, TimeoutError, orjson.JSONDecodeError) as exc:
                results.append(CheckResult("canonical.flag", "WARN", f"probe failed: {type(exc).__name__}"))
        for flow in flows:
            if flow == "canonical" and flag_off:
                results.append(CheckResult("canonical.session", "INFO", "skipped: the flag is off"))
                continue
            results.append(await _one_session(http, replace(opts, flow=cast(FlowName, flow)), timeout))
    return results
