"""Pre-deployment validation: health fields, the canonical flag seen from outside, one session per flow.

Returns results; printing and exit codes belong to the CLI.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

import orjson

from ._config import FlowOptions, Limits, Timeouts, TLSOptions
from ._engine import make_client
from ._http import Transport
from ._outcomes import Outcome, SessionError
from ._record import SessionRecord
from ._session import run_session

__all__ = ["CheckResult", "run_checks", "health_findings", "LEVELS"]

LEVELS = ("OK", "INFO", "WARN", "FAIL", "UNKNOWN")


@dataclass(frozen=True)
class CheckResult:
    name: str
    level: str  # one of LEVELS
    detail: str


def health_findings(body: Any, optional: frozenset[str] = frozenset()) -> list[CheckResult]:
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
        down = [k for k, v in deps.items() if v is not True and k not in optional]
        allowed = [k for k, v in deps.items() if v is not True and k in optional]
        detail = f"not true: {', '.join(down)}" if down else f"all {len(deps) - len(allowed)} required true"
        if allowed:
            detail += f" (optional and off: {', '.join(allowed)})"
        out.append(CheckResult("health.dependencies", "WARN" if down else "OK", detail))
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


async def _flag_state(
    http: Transport, base: str, app: str, headers: dict[str, str], tls: TLSOptions
) -> tuple[CheckResult, bool | None]:
    """POST /run_sse for a session that does not exist: 501 means the flag is off, 404/200 on."""
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
        status = resp.status  # the body is not read: the connection is closed, never reused
    if status == 501:
        return CheckResult("canonical.flag", "INFO", "OFF (POST /run_sse answers 501)"), False
    if status in (200, 404):
        return CheckResult("canonical.flag", "INFO", f"ON (POST /run_sse answers {status}, not 501)"), True
    return CheckResult("canonical.flag", "WARN", f"unknown: POST /run_sse answered HTTP {status}"), None


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
            return [CheckResult("health", "UNKNOWN", f"cannot reach {base}/health: {why}")]
        flag_on: bool | None = None
        if "canonical" in flows:
            try:
                async with asyncio.timeout(timeout):
                    flag, flag_on = await _flag_state(http, base, opts.app, headers, opts.tls)
                results.append(flag)
            except (SessionError, OSError, TimeoutError) as exc:
                results.append(CheckResult("canonical.flag", "WARN", f"probe failed: {type(exc).__name__}"))
        for flow in flows:
            if flow == "canonical" and flag_on is False:
                results.append(CheckResult("canonical.session", "INFO", "skipped: the flag is off"))
                continue
            results.append(await _one_session(http, replace(opts, flow=flow), timeout))
    return results
