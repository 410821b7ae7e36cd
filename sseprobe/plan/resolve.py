"""Input that becomes value objects, in one order of precedence: built-in default < scenario file < option
given explicitly (a flag on the command line, a key in a Python caller's overrides).

No click here: the command line and the Python API share this. Bad input becomes a :class:`UsageProblem`
(one line, exit 3); warnings and notes are collected, never printed, so the caller decides where they go.
"""

from __future__ import annotations

import base64
import math
import os
import re
import stat
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlsplit, urlunsplit

from .._config import FlowName, FlowOptions, Limits, Timeouts, TLSOptions
from .._errors import UsageProblem as UsageProblem  # also importable from here (a public path)
from .._redact import SECRET_HEADERS, redact_url
from ..load.calibration import calibration_path, load_calibration, over_calibration
from ..load.cluster import NODE_LOSS, ClusterOptions, import_ray, parse_cluster
from ..load.engine import Load
from ..load.files import open_file_room
from ..load.pacer import Phase, Schedule
from ..load.runner import RunOptions, default_workers, useful_workers
from ..report.document import ResultsError, check_output, default_out_path
from ..verdict.policy import DEFAULT_POLICY, Policy, PolicyError, load_policy
from ..verdict.schema import JSONObject, LoadConfigDoc, TlsConfigDoc
from ..verdict.sequential import UntilDecided
from ..wire.http import tls_context
from .options import Options, options_from
from .scenario import LoadValue, Scenario, ScenarioError, load_scenario

_T = TypeVar("_T")


# --- plain parsing ------------------------------------------------------------------------------


def parse_url(value: str, what: str = "--url") -> str:
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        port = parts.port  # raises on a bad port
    except ValueError:
        ok, port = False, None
    if not ok:
        raise UsageProblem(f"{what}: not an http(s) URL: {redact_url(value)!r}")
    if port == 0:
        raise UsageProblem(f"{what}: port 0 is not a port a service listens on: {redact_url(value)!r}")
    return value


def split_credentials(url: str, what: str = "--url") -> tuple[str, tuple[str, str] | None]:
    """``http://user:pw@host/x`` -> (``http://host/x``, a Basic ``Authorization`` header): the
    credentials travel as the header they stand for, and like every secret header never reach output."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    try:
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    except UnicodeEncodeError:
        raise UsageProblem(f"{what}: the credentials in the URL are not text") from None
    return urlunsplit(parts._replace(netloc=host)), ("Authorization", f"Basic {token}")


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: header names and methods
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # control characters other than tab


def check_token(value: str, what: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise UsageProblem(f"{what}: {value[:40]!r} is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~)")
    return value


def parse_headers(
    values: tuple[str, ...] | dict[str, str], bearer_env: str | None, bearer_file: str | None
) -> tuple[tuple[str, str], ...]:
    """Headers as given, checked: a header's text is never echoed in an error (it may be a token:
    ``-H 'Authorization Bearer abc'``), only its number; values must be Latin-1 text without control
    characters, as HTTP/1.1 sends them (a refusal now, not a run of failed sessions)."""
    headers: list[tuple[str, str]] = []
    items = values.items() if isinstance(values, dict) else [_split_header(i, v) for i, v in enumerate(values, 1)]
    for i, (k, v) in enumerate(items, 1):
        name, value = str(k).strip(), str(v).strip()
        if not _TOKEN.fullmatch(name):
            raise UsageProblem(
                f"header {i}: its name is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~); not shown: "
                "it may hold a secret"
            )
        _check_value(value, f"header {name}")
        headers.append((name, value))
    token = None
    if bearer_env:
        token = os.environ.get(bearer_env)
        if not token or not token.strip():
            raise UsageProblem(f"bearer token: environment variable {bearer_env} is not set or empty")
    if bearer_file:
        try:
            token = read_small_text(bearer_file, 64 * 1024, "bearer token").strip()
        except OSError as exc:
            raise UsageProblem(f"bearer token: cannot read {bearer_file}: {exc.strerror}") from None
        if not token:
            raise UsageProblem(f"bearer token: {bearer_file} is empty")
    if token:
        _check_value(token.strip(), "bearer token")
        headers.append(("Authorization", f"Bearer {token.strip()}"))
    return tuple(headers)


def _check_value(value: str, what: str) -> None:
    if _BAD_VALUE.search(value):
        raise UsageProblem(f"{what}: the value holds a line break or control character")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise UsageProblem(f"{what}: the value is not Latin-1 text, which HTTP/1.1 headers carry") from None


def _split_header(i: int, raw: str) -> tuple[str, str]:
    name, sep, val = raw.partition(":")
    if not sep or not name.strip():
        raise UsageProblem(f"--header {i} has no ':' (expected 'Name: value'; not shown: it may hold a secret)")
    return name, val


def read_small_text(path: str | Path, limit: int, what: str) -> str:
    """A small text file, checked before it is opened: a regular file (a FIFO or a device would block
    or never end) of at most ``limit`` bytes. UsageProblem naming ``what`` and the file otherwise;
    OSError when it cannot be read."""
    p = Path(path).expanduser() if str(path).startswith("~") else Path(path)
    try:
        st = p.stat()
    except RuntimeError:  # "~nouser": no such user's home
        raise UsageProblem(f"{what}: {str(path)[:80]!r}: no such user's home folder") from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageProblem(f"{what}: {str(path)[:80]} is not a regular file")
    if st.st_size > limit:
        raise UsageProblem(f"{what}: {str(path)[:80]} is {st.st_size:,} bytes, more than the {limit:,} it may be")
    with p.open("rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UsageProblem(f"{what}: {str(path)[:80]} is more than the {limit:,} bytes it may be")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageProblem(f"{what}: {str(path)[:80]} is not UTF-8 text") from None


def public_headers(headers: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Header names for the results document; secret values replaced."""
    return {k: ("REDACTED" if k.lower() in SECRET_HEADERS else v) for k, v in headers}


def build_tls(
    ca_file: str | None = None,
    insecure: bool = False,
    cert: str | None = None,
    key: str | None = None,
    notes: list[str] | None = None,
    url: str | None = None,
    tls_resume: bool = True,
) -> TLSOptions:
    """The TLS options, with their files read once now (a bad file is bad input, not a run of
    connect errors); --insecure is announced once (and not for an ``http://`` URL, which it cannot touch)."""
    tls = _value_object(
        lambda: TLSOptions(ca_file=ca_file, insecure=bool(insecure), cert=cert, key=key, resume=bool(tls_resume))
    )
    _value_object(lambda: tls_context(tls))
    if tls.insecure and (url is None or url.lower().startswith("https://")):
        _say(notes, "WARNING: --insecure: https certificates and host names are NOT verified")
    return tls


def tls_config(opts: FlowOptions) -> TlsConfigDoc | None:
    """How an https cohort trusted its target, for the results document (no paths, no keys)."""
    if not opts.url.lower().startswith("https://"):
        return None
    tls = opts.tls
    out: TlsConfigDoc = {
        "verified": not tls.insecure,
        "trust": "none (--insecure)" if tls.insecure else "--ca-file" if tls.ca_file else "system CAs",
        "client_certificate": tls.cert is not None,
        "resume": tls.resume,
    }
    if tls.insecure:
        out["warning"] = "INSECURE: certificates and host names were not verified"
    return out


# --- precedence: default < scenario < command line -----------------------------------------------

_SCENARIO_NAMES = {
    "duration_s": "duration",
    "think_s": "think",
    "grace_s": "grace",
    "abort_on_trigger_s": "abort_on_trigger",
    "max_duration_s": "max_duration",
    "metrics_linger_s": "metrics_linger",
}


def read_scenario(path: str | None) -> Scenario | None:
    if path is None:
        return None
    try:
        return load_scenario(path)
    except ScenarioError as exc:
        raise UsageProblem(str(exc)) from None


@dataclass(frozen=True)
class Resolved:
    """The options with a scenario's load values laid under the ones given explicitly.

    ``chosen``: the names set by a flag/override or by the scenario (not left at their default);
    ``closed_model``: the closed-model options set (``concurrency``, ``think``), which a rate or phases
    contradict (refused in :func:`build_load`)."""

    options: Options
    chosen: frozenset[str]
    closed_model: frozenset[str]


def resolve(params: Options, given: Collection[str], scenario: Scenario | None) -> Resolved:
    """The scenario's load values laid under the options ``given`` explicitly."""
    laid: dict[str, LoadValue] = {}
    closed = {name for name in ("concurrency", "think") if name in given}
    if scenario is not None:
        for key, value in scenario.load.items():
            name = _SCENARIO_NAMES.get(key, key)
            if name not in given:
                laid[name] = value
                if name in ("concurrency", "think") and "rate" not in given:
                    closed.add(name)  # a --rate given here overrides the scenario's closed model
    return Resolved(options_from(laid, params), frozenset(given) | laid.keys(), frozenset(closed))


# --- value objects ---------------------------------------------------------------------------------


def _value_object(build: Callable[[], _T]) -> _T:
    try:
        return build()
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None


def build_timeouts(o: Options) -> Timeouts:
    return _value_object(lambda: Timeouts(connect=o.connect_timeout, idle=o.idle_timeout, session=o.session_timeout))


def build_limits(o: Options) -> Limits:
    return _value_object(
        lambda: Limits(connections=o.connections, max_line=o.max_line, max_event=o.max_line, pin_address=o.pin_address)
    )


def build_load(o: Options, phases: tuple[Phase, ...] = (), closed_model: Collection[str] = ()) -> Load:
    """Closed model unless a rate or phases are given; a rate needs an end (duration or sessions).
    ``closed_model``: the closed-model options set (:attr:`Resolved.closed_model`); with a rate or
    phases they are a mix of the two models, refused."""
    sessions, duration, rate = o.sessions, o.duration, o.rate
    if rate is not None and phases:
        raise UsageProblem("--rate and scenario phases both given: use one")
    schedule = None
    if (rate is not None or phases) and closed_model:
        mixed = " and ".join(f"--{n}" for n in sorted(closed_model))
        raise UsageProblem(f"{mixed} set the closed model (users), --rate or phases the open model: use one")
    if phases:
        schedule = _value_object(lambda: Schedule(phases, bool(o.poisson), o.seed or 0))
    elif rate is not None:
        if not rate > 0:
            raise UsageProblem("--rate must be > 0 sessions per second")
        if duration is None and sessions is None:
            raise UsageProblem("--rate needs --duration or --sessions to know when to stop")
        span = duration if duration is not None else cast(int, sessions) / rate
        schedule = _value_object(
            lambda: Schedule(
                (Phase(span, rate, rate, "poisson" if o.poisson else "constant"),),
                bool(o.poisson),
                o.seed or 0,
            )
        )
    elif sessions is None and duration is None:
        sessions = 100
    return _value_object(
        lambda: Load(
            sessions=sessions,
            duration=duration,
            concurrency=o.concurrency,
            think=o.think,
            schedule=schedule,
            max_in_flight=o.max_in_flight,
            grace=o.grace,
        )
    )


_SPAN_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}
_SPAN = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*")


def parse_span(value: str | float | None, what: str = "--max-duration") -> float | None:
    """A wall-clock span: seconds, or a number with s, m or h (``30m``, ``1.5h``); None stays None."""
    if value is None or isinstance(value, int | float):
        return None if value is None else float(value)
    match = _SPAN.fullmatch(value)
    if not match:
        raise UsageProblem(f"{what}: expected seconds or a number with s, m or h (e.g. 30m), got {value[:40]!r}")
    return float(match[1]) * _SPAN_UNITS[match[2]]


_SEQUENTIAL_ONLY = ("look_every", "max_sessions", "max_duration")


def until_decided_from(
    o: Options,
    given: Collection[str],
    chosen: Collection[str],
    command: str,
    phases: bool,
    notes: list[str] | None = None,
) -> tuple[UntilDecided | None, Options]:
    """The sequential mode's settings (None when not asked for), and the options it leaves.

    It stops by itself: an end (--sessions, --duration) given with it at the same level is refused, a
    scenario's end under an explicit --until-decided is set aside (the options returned have none; said
    in a note); phases (a schedule in time) are refused, and so are its caps set (``chosen``) without it."""
    if not o.until_decided:
        caps = [k for k in _SEQUENTIAL_ONLY if k in chosen]
        if caps:
            raise UsageProblem(f"--{caps[0].replace('_', '-')} needs --until-decided")
        return None, o
    if command != "compare":
        raise UsageProblem("--until-decided is for compare: a run has nothing to decide")
    for end in ("sessions", "duration"):
        if getattr(o, end) is None:
            continue
        if end in given or "until_decided" not in given:
            raise UsageProblem(f"--until-decided stops by itself: give --max-sessions or --max-duration, not --{end}")
        _say(notes, f"note: --until-decided: the scenario's {end} is set aside (it stops when decided or at a cap)")
        o = replace(o, sessions=None) if end == "sessions" else replace(o, duration=None)
    if phases:
        raise UsageProblem(
            "--until-decided runs at one --rate or --concurrency: scenario phases cannot be used with it"
        )
    span = parse_span(o.max_duration)
    settings = o
    return _value_object(lambda: UntilDecided(int(settings.look_every), int(settings.max_sessions), span)), o


def read_policy(path: str | None) -> Policy:
    if path is None:
        return DEFAULT_POLICY
    try:
        return load_policy(path)
    except PolicyError as exc:
        raise UsageProblem(str(exc)) from None


def build_run_options(o: Options, policy: Policy, load: Load | None = None) -> RunOptions:
    workers = worker_count(o.workers, load)
    abort = o.abort_on_trigger  # bounded where it entered (flag or scenario)
    return RunOptions(
        workers=workers,
        progress=None if o.quiet else sys.stderr,
        progress_every=None if sys.stderr.isatty() else progress_period(),
        abort_on_trigger=abort,
        policy=policy,
        cluster=build_cluster(o),
    )


PROGRESS_EVERY_S = 10.0
PROGRESS_EVERY_ENV = "SSEPROBE_PROGRESS_EVERY"  # seconds between plain progress lines; for tests, not documented


def progress_period() -> float:
    """How often a plain progress line is printed when stderr is not a terminal."""
    raw = os.environ.get(PROGRESS_EVERY_ENV)
    if raw is None:
        return PROGRESS_EVERY_S
    try:
        every = float(raw)
    except ValueError:
        every = 0.0
    if not every > 0:
        raise UsageProblem(f"{PROGRESS_EVERY_ENV}={raw!r}: expected a number of seconds > 0")
    return every


def worker_count(asked: int | None, load: Load | None) -> int:
    """Never more worker processes than sessions to share, than users in the closed model, or (unless
    asked for) than cores: an idle worker has nothing to measure, and 1,000 of them only cost."""
    if asked is not None and asked < 1:
        raise UsageProblem("--workers must be >= 1")
    caps = [asked or default_workers()]
    if load is not None:
        if load.sessions is not None:
            caps.append(load.sessions)
        if load.schedule is None:
            caps.append(load.concurrency)
    return max(1, min(caps))


def fit_open_files(load: Load, limits: Limits, workers: int, given_max_in_flight: bool) -> tuple[Load, str | None]:
    """Check, before any load, that the sessions in flight fit the open-file limit.

    Closed model: users that cannot fit are bad input (one line saying how many can). Open model:
    the in-flight cap is lowered to what fits (held-back arrivals show as lag), and said."""
    room = open_file_room()
    per_worker = math.ceil((load.concurrency if load.schedule is None else load.max_in_flight) / workers)
    if limits.connections:  # sessions beyond the connection cap wait for one, holding no file
        per_worker = min(per_worker, limits.connections)
    if per_worker <= room:
        return load, None
    fits = room * workers
    if load.schedule is None:
        raise UsageProblem(
            f"--concurrency {load.concurrency} does not fit the open-file limit: {workers} worker process(es) "
            f"can hold {fits} sessions at once (raise 'ulimit -n', add --workers, or lower -c)"
        )
    note = f"max in flight lowered from {load.max_in_flight} to {fits}: the open-file limit holds no more"
    return replace(load, max_in_flight=max(1, fits)), note if given_max_in_flight else None


def check_outputs(*paths: tuple[str, str | Path | None]) -> None:
    """(what, path) pairs: each path given can be written, and would replace at most a regular file."""
    for what, path in paths:
        if path:
            try:
                check_output(path, what)
            except ResultsError as exc:
                raise UsageProblem(str(exc)) from None


def prepare_run(
    o: Options,
    policy: Policy,
    load: Load,
    limits: Limits,
    kind: str,
    html: str | None,
    notes: list[str] | None = None,
    chosen: Collection[str] = (),
) -> tuple[RunOptions, Load, str]:
    """Everything that can be refused is refused before any load: workers, open files, output paths.
    Returns the run options, the load (in-flight cap fitted to the open-file limit) and the results path.
    ``chosen``: the options set explicitly or by the scenario (a lowered in-flight cap is said if it was)."""
    run_opts = build_run_options(o, policy, load)
    load, note = fit_open_files(load, limits, run_opts.workers, given_max_in_flight="max_in_flight" in chosen)
    if note:
        _say(notes, f"note: {note}")
    if run_opts.cluster is None:  # a cluster's workers run on other machines, calibrated or not
        warn_over_calibration(load, useful_workers(load, run_opts.workers), notes)
    out = str(o.out or default_out_path(kind))
    check_outputs(("--out", out), ("--html", html))
    return run_opts, load, out


def warn_over_calibration(load: Load, workers: int, notes: list[str] | None) -> None:
    """Before any load, one line when each worker is asked for more than this machine's stored
    calibration (``sseprobe calibrate``) sustained; a calibration of another machine is ignored."""
    try:
        where = calibration_path()
    except ValueError as exc:
        raise UsageProblem(str(exc)) from None
    doc, unusable = load_calibration(where)
    if unusable:
        _say(notes, f"note: {unusable}")
    elif doc is not None and (warning := over_calibration(doc, load, workers)):
        _say(notes, warning)


def build_cluster(o: Options) -> ClusterOptions | None:
    """--cluster and its companions; Ray is imported here so a missing extra fails before any load."""
    address, per_node, on_loss = o.cluster, o.workers_per_node, o.on_node_loss or "abort"
    if on_loss not in NODE_LOSS:
        raise UsageProblem(f"on_node_loss: expected one of {', '.join(NODE_LOSS)}, got {str(on_loss)[:40]!r}")
    if address is None:
        if per_node is not None:
            raise UsageProblem("--workers-per-node needs --cluster")
        if o.on_node_loss is not None:
            raise UsageProblem("--on-node-loss needs --cluster (it says what a lost cluster node does)")
        return None
    if per_node is not None and per_node < 1:
        raise UsageProblem("--workers-per-node must be >= 1")
    if o.workers is not None:
        raise UsageProblem("--workers counts this machine's processes: with --cluster give --workers-per-node")
    _value_object(lambda: parse_cluster(address))
    import_ray()
    return ClusterOptions(address, per_node, on_loss)


def build_flow(flow: str, url: str | None, what: str = "--url", **kw: Any) -> FlowOptions:
    if not url:
        raise UsageProblem(f"{what} is required (on the command line or in the scenario)")
    return _value_object(lambda: FlowOptions(flow=cast(FlowName, flow), url=parse_url(url, what), **kw))


def load_config(o: Options, load: Load, timeouts: Timeouts, workers: int) -> LoadConfigDoc:
    """The load part of the results document's config (no secrets live here)."""
    schedule = load.schedule
    return {
        "sessions": load.sessions,
        "duration": load.duration,
        "concurrency": load.concurrency,
        "think": load.think,
        "grace": load.grace,
        "workers": None if o.cluster else useful_workers(load, workers),  # processes that ran (cluster: generator)
        "cluster": redact_url(o.cluster) if o.cluster else None,
        "scenario": o.scenario,
        "model": "open" if schedule else "closed",
        "phases": [
            {"name": p.name, "duration_s": p.duration, "rate": [p.start_rate, p.end_rate]} for p in schedule.phases
        ]
        if schedule
        else [],
        "poisson": bool(schedule and schedule.poisson),
        "timeouts": {"connect": timeouts.connect, "idle": timeouts.idle, "session": timeouts.session},
    }


_FLOW_KEYS = (
    "app",
    "user_prefix",
    "messages",
    "session_create",
    "legacy_stream",
    "headers",
    "bearer_env",
    "bearer_file",
    "method",
    "body",
    "complete_on",
    "first_answer_event",
    "first_answer_field",
)


def flow_from(
    params: Options,
    given: Collection[str],
    scenario_values: JSONObject,
    flow: str,
    url: str | None,
    what: str = "--url",
    notes: list[str] | None = None,
) -> FlowOptions:
    """One cohort's FlowOptions: a scenario cohort's values under the flags given on the command line."""
    v = dict(scenario_values)
    if "message" in v:
        v["messages"] = (v.pop("message"),)
    for key in _FLOW_KEYS:
        if key in given or key not in v:
            v[key] = getattr(params, key)
    headers = parse_headers(v.pop("headers", ()) or (), v.pop("bearer_env", None), v.pop("bearer_file", None))
    body = v.pop("body", None)
    if isinstance(body, str):
        body = body.encode()
    v.pop("flow", None)
    v.pop("url", None)
    method = check_token(str(v.pop("method", "GET")).upper(), "--method")
    target = url or scenario_values.get("url")
    if target:
        target, auth = split_credentials(parse_url(target, what), what)
        if auth is not None:
            if any(name.lower() == "authorization" for name, _ in headers):
                raise UsageProblem(f"{what}: credentials in the URL and an Authorization header: give one")
            headers = (*headers, auth)
    tls = build_tls(params.ca_file, params.insecure, params.cert, params.key, notes, target, params.tls_resume)
    return build_flow(flow, target, what, headers=headers, body=body, method=method, tls=tls, **v)


def _say(notes: list[str] | None, text: str) -> None:
    """A warning or note for the caller to show; without a list to collect it, one line on stderr."""
    if notes is None:
        print(f"sseprobe: {text}", file=sys.stderr)
    elif text not in notes:  # one warning per plan, however many cohorts share its cause
        notes.append(text)
