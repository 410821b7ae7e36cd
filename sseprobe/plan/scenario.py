"""Scenario files (TOML): cohorts, messages, timeouts, phases, policy. Read with the standard library.

A scenario gives values in the same names as the command-line options, so the CLI can lay them
out in one order: built-in default < scenario < flag given on the command line. Every mistake
is a :class:`ScenarioError` naming the file, the key and what was expected. Secrets are never
inline: auth comes from an environment variable or a file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._config import FLOWS, LEGACY_STREAMS, SESSION_CREATE
from .._errors import SseprobeError
from .._redact import SECRET_HEADERS
from .._toml import StrictReader, read_toml
from ..load.pacer import Phase
from ..verdict.schema import JSONObject

__all__ = ["BOUNDS", "LoadValue", "Scenario", "ScenarioCohort", "ScenarioError", "load_scenario", "out_of_bounds"]


class ScenarioError(SseprobeError, ValueError):
    """One line: file, key, what was expected."""


LoadValue = int | float | bool | str  # a [load] or [timeouts] value: a TOML scalar, checked and bounded


@dataclass(frozen=True)
class ScenarioCohort:
    name: str
    values: JSONObject  # the TOML table: flow, url, app, messages, session_create, headers, bearer_env, ...
    weight: float = 1.0


@dataclass(frozen=True)
class Scenario:
    path: str
    description: str = ""
    load: dict[str, LoadValue] = field(default_factory=dict)  # option name -> value (sessions, rate, ...)
    phases: tuple[Phase, ...] = ()
    cohorts: tuple[ScenarioCohort, ...] = ()
    policy: str | None = None  # path of a policy TOML file, relative to the scenario's folder


# key -> (type(s), what we say was expected)
_LOAD_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "sessions": ((int,), "a whole number >= 1"),
    "duration_s": ((int, float), "seconds > 0"),
    "concurrency": ((int,), "a whole number >= 1"),
    "think_s": ((int, float), "seconds >= 0"),
    "rate": ((int, float), "sessions per second > 0"),
    "poisson": ((bool,), "true or false"),
    "seed": ((int,), "a whole number"),
    "workers": ((int,), "a whole number >= 1"),
    "cluster": ((str,), "local:N, ray://HOST:PORT or auto"),
    "workers_per_node": ((int,), "a whole number >= 1"),
    "on_node_loss": ((str,), "abort or continue"),
    "max_in_flight": ((int,), "a whole number >= 1"),
    "grace_s": ((int, float), "seconds >= 0"),
    "abort_on_trigger_s": ((int, float), "seconds > 0"),
    "until_decided": ((bool,), "true or false"),
    "look_every": ((int,), "a whole number >= 1 (sessions per cohort between looks)"),
    "max_sessions": ((int,), "a whole number >= 1 (sessions per cohort)"),
    "max_duration_s": ((int, float), "seconds > 0"),
    "traffic_rate": ((int, float), "sessions per second >= 0.001"),
    "metrics_port": ((int,), "a TCP port 0-65535 (0: any free port)"),
    "metrics_host": ((str,), "an address to listen on, e.g. 127.0.0.1"),
    "metrics_linger_s": ((int, float), "seconds >= 0"),
}
_TIMEOUT_KEYS = {"connect_s": "connect_timeout", "idle_s": "idle_timeout", "session_s": "session_timeout"}
_OPTION_OF = {
    "duration_s": "duration",
    "think_s": "think",
    "grace_s": "grace",
    "abort_on_trigger_s": "abort_on_trigger",
    "max_duration_s": "max_duration",
    "metrics_linger_s": "metrics_linger",
}

# option -> (lowest, highest, lowest allowed itself): every count, rate and time is finite and sane
BOUNDS: dict[str, tuple[float, float, bool]] = {
    "sessions": (1, 1e9, True),
    "duration": (0, 1e7, False),
    "concurrency": (1, 1e6, True),
    "think": (0, 86_400, True),
    "rate": (0, 1e6, False),
    "seed": (0, 2**63 - 1, True),
    "workers": (1, 1024, True),
    "max_in_flight": (1, 1e7, True),
    "grace": (0, 1e6, True),
    "abort_on_trigger": (0, 1e6, False),
    "connect_timeout": (0, 1e6, False),
    "idle_timeout": (0, 1e6, False),
    "session_timeout": (0, 1e7, False),
    "connections": (0, 1e7, True),
    "max_line": (1, 2**30, True),
    "look_every": (1, 1e9, True),
    "max_sessions": (1, 1e9, True),
    "max_duration": (0, 1e7, False),
    # a rate below 1e-3/s (86 a day) projects a decision decades away, and 5e-324 divides by zero
    "traffic_rate": (1e-3, 1e9, True),
    "metrics_port": (0, 65_535, True),
    "metrics_linger": (0, 86_400, True),
}


def out_of_bounds(option: str, value: Any) -> str | None:
    """What ``option`` expects when ``value`` is not a finite number within its bounds, else None."""
    if option not in BOUNDS or value is None or isinstance(value, bool):
        return None
    lo, hi, lo_ok = BOUNDS[option]
    fine = math.isfinite(value) and (value >= lo if lo_ok else value > lo) and value <= hi
    return None if fine else f"a finite number {'>=' if lo_ok else '>'} {lo:g} and <= {hi:g}"


_COHORT_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "flow": ((str,), f"one of {', '.join(FLOWS)}"),
    "url": ((str,), "an http(s) URL"),
    "weight": ((int, float), "a share > 0, e.g. 5 for 5 %"),
    "app": ((str,), "an ADK app name"),
    "user_prefix": ((str,), "text"),
    "message": ((str,), "text"),
    "messages": ((list,), "a list of message texts"),
    "session_create": ((str,), f"one of {', '.join(SESSION_CREATE)}"),
    "legacy_stream": ((str,), f"one of {', '.join(LEGACY_STREAMS)}"),
    "headers": ((dict,), "a table of header names to values (no secrets: use bearer_env/bearer_file)"),
    "bearer_env": ((str,), "the name of an environment variable holding a token"),
    "bearer_file": ((str,), "the path of a file holding a token"),
    "method": ((str,), "an HTTP method"),
    "body": ((str,), "text"),
    "complete_on": ((str,), "an event name"),
    "first_answer_event": ((str,), "an event name"),
    "first_answer_field": ((str,), "a dotted JSON path"),
}


class _Reader(StrictReader):
    def bounded(self, key: str, v: Any, spec: tuple[tuple[type, ...], str], option: str) -> Any:
        v = self.typed(key, v, spec)
        expected = out_of_bounds(option, v)
        if expected:
            raise self.fail(key, expected, v)
        return v


def _phase(r: _Reader, key: str, d: Any) -> Phase:
    d = r.table(key, d)
    r.known(f"{key}.", d, {"name", "duration_s", "rate"})
    if "duration_s" not in d:
        raise r.fail(f"{key}.duration_s", "seconds > 0 (missing)")
    duration = r.bounded(f"{key}.duration_s", d["duration_s"], ((int, float), "seconds > 0"), "duration")
    rate = d.get("rate")
    if isinstance(rate, list) and len(rate) == 2 and all(isinstance(x, (int, float)) for x in rate):
        start, end = float(rate[0]), float(rate[1])
    elif isinstance(rate, (int, float)) and not isinstance(rate, bool):
        start = end = float(rate)
    else:
        raise r.fail(f"{key}.rate", "sessions/s, or [from, to] for a linear ramp", rate)
    if not all(math.isfinite(x) and 0 <= x <= BOUNDS["rate"][1] for x in (start, end)):
        raise r.fail(f"{key}.rate", f"sessions/s >= 0 and <= {BOUNDS['rate'][1]:g}", rate)
    try:
        return Phase(float(duration), start, end, str(d.get("name", "")))
    except ValueError as exc:
        raise r.fail(key, str(exc)) from None


def _cohort(r: _Reader, name: str, d: Any) -> ScenarioCohort:
    key = f"cohorts.{name}"
    d = r.table(key, d)
    r.known(f"{key}.", d, set(_COHORT_KEYS))
    values = {k: r.typed(f"{key}.{k}", v, _COHORT_KEYS[k]) for k, v in d.items()}
    if values.get("flow", name) not in FLOWS:
        raise r.fail(f"{key}.flow", _COHORT_KEYS["flow"][1], values.get("flow", name))
    for choice, allowed in (("session_create", SESSION_CREATE), ("legacy_stream", LEGACY_STREAMS)):
        if values.get(choice, allowed[0]) not in allowed:
            raise r.fail(f"{key}.{choice}", _COHORT_KEYS[choice][1], values[choice])
    for h, v in values.get("headers", {}).items():
        if h.lower() in SECRET_HEADERS:
            raise r.fail(f"{key}.headers.{h}", "no inline secrets: use bearer_env or bearer_file")
        if not isinstance(v, str):
            raise r.fail(f"{key}.headers.{h}", "text", v)
    msgs = values.pop("messages", None)
    if msgs is not None:
        if not msgs or not all(isinstance(m, str) for m in msgs):
            raise r.fail(f"{key}.messages", "a non-empty list of texts", msgs)
        values["messages"] = tuple(msgs)
    values.setdefault("flow", name)
    weight = float(values.pop("weight", 1.0))
    if not weight > 0:
        raise r.fail(f"{key}.weight", _COHORT_KEYS["weight"][1], weight)
    return ScenarioCohort(name, values, weight)


def load_scenario(path: str | Path) -> Scenario:
    p = str(path)
    r = _Reader(p, ScenarioError)
    data = read_toml(p, ScenarioError)
    r.known("", data, {"description", "load", "timeouts", "cohorts", "policy"})
    load_t = r.table("load", data.get("load", {}))
    r.known("load.", load_t, set(_LOAD_KEYS) | {"phases"})
    load = {
        k: r.bounded(f"load.{k}", v, _LOAD_KEYS[k], _OPTION_OF.get(k, k)) for k, v in load_t.items() if k != "phases"
    }
    phases_raw = load_t.get("phases", [])
    if not isinstance(phases_raw, list):
        raise r.fail("load.phases", "an array of tables [[load.phases]]", phases_raw)
    phases = tuple(_phase(r, f"load.phases[{i}]", ph) for i, ph in enumerate(phases_raw))
    if phases and "rate" in load:
        raise r.fail("load.rate", "either load.rate or [[load.phases]], not both")
    timeouts_t = r.table("timeouts", data.get("timeouts", {}))
    r.known("timeouts.", timeouts_t, set(_TIMEOUT_KEYS))
    for k, v in timeouts_t.items():
        load[_TIMEOUT_KEYS[k]] = r.bounded(f"timeouts.{k}", v, ((int, float), "seconds > 0"), _TIMEOUT_KEYS[k])
    cohorts_t = r.table("cohorts", data.get("cohorts", {}))
    cohorts = tuple(_cohort(r, name, d) for name, d in cohorts_t.items())
    policy = data.get("policy")
    if policy is not None:
        if not isinstance(policy, str):
            raise r.fail("policy", "the path of a policy TOML file", policy)
        policy = str(Path(path).parent / policy)
    description = data.get("description", "")
    if not isinstance(description, str):
        raise r.fail("description", "text", description)
    return Scenario(p, description, load, phases, cohorts, policy)
