"""The built-in target's configuration (per-cohort knobs, global switches) and its counters.

Validated where built (the CLI and ``PATCH /_target/config`` both rely on it): wrong types and
out-of-range knobs are refused up front.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..verdict.schema import JSONObject

__all__ = ["CohortKnobs", "TargetConfig", "CohortCounters", "TargetStats", "Target", "PROFILES", "STREAM_FAULTS"]

PROFILES = ("default", "vana-real")  # vana-real: what the real backend was seen doing (target/_real.py)
STREAM_FAULTS = ("stream_error", "premature_close", "stall")
COHORTS = ("canonical", "legacy")


def _validate(obj: Any) -> None:
    """Reject wrong types and out-of-range knobs up front: the CLI and PATCH both rely on it."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        kind = str(f.type)  # annotations are strings here (from __future__ import annotations)
        if not isinstance(value, _KINDS[kind]) or isinstance(value, bool) and kind != "bool":
            raise TypeError(f"{f.name}: expected {kind}, got {value!r}")
        if kind == "float":
            setattr(obj, f.name, float(value))
        low, high = _bounds(f.name)
        if kind in ("float", "int", "float | None") and value is not None and not low <= float(value) <= high:
            raise ValueError(f"{f.name}: {value!r} outside [{low}, {high}]")


def _bounds(name: str) -> tuple[float, float]:
    """Probabilities (``p_*``, ``*_rate``) lie in [0, 1], a run has at least one event, the rest is >= 0."""
    if name.startswith("p_") or name.endswith("_rate"):
        return 0, 1
    return (1, math.inf) if name == "events" else (0, math.inf)


@dataclass
class CohortKnobs:
    """Latency and fault knobs of one cohort. Faults are drawn exclusively, so each group sums to <= 1."""

    ttfe_ms: float = 50.0
    ttfe_spread: float = 0.3
    events: int = 5
    gap_ms: float = 20.0
    p_5xx: float = 0.0
    p_429: float = 0.0
    p_stream_error: float = 0.0
    p_premature_close: float = 0.0
    p_stall: float = 0.0

    def __post_init__(self) -> None:
        _validate(self)
        if self.p_5xx + self.p_429 > 1 or sum(getattr(self, "p_" + name) for name in STREAM_FAULTS) > 1:
            raise ValueError("p_5xx + p_429 and p_stream_error + p_premature_close + p_stall must each be <= 1")


_KINDS: dict[str, tuple[type[Any], ...]] = {
    "float": (int, float),
    "int": (int,),
    "bool": (bool,),
    "str": (str,),
    "str | None": (str, type(None)),
    "float | None": (int, float, type(None)),
    "CohortKnobs": (CohortKnobs,),
}


@dataclass
class TargetConfig:
    canonical: CohortKnobs = field(default_factory=CohortKnobs)
    legacy: CohortKnobs = field(default_factory=CohortKnobs)
    canonical_enabled: bool = True
    adk_style: bool = False
    keepalive_s: float = 30.0
    stall_max_s: float = 600.0
    rate_limit: int = 0
    require_token: str | None = None
    health_ci_shape: bool = False
    unhealthy: bool = False
    cloud_logging: bool = True
    seed: int = 0
    # the real service's quirks (profile "vana-real"; see target/_real.py)
    profile: str = "default"
    model_delay_ms: float | None = None
    model_fail_rate: float = 0.0
    legacy_model_limit: int = 10
    legacy_model_window_s: float = 60.0
    legacy_model_wait_s: float = 30.0

    def __post_init__(self) -> None:
        _validate(self)
        if self.keepalive_s <= 0 or self.stall_max_s <= 0:
            raise ValueError("keepalive_s and stall_max_s must be > 0")
        if self.profile not in PROFILES:
            raise ValueError(f"profile: {self.profile!r} is not one of {', '.join(PROFILES)}")
        if self.legacy_model_window_s <= 0:
            raise ValueError("legacy_model_window_s must be > 0")


def _config_from_dict(data: JSONObject) -> TargetConfig:
    """Build a validated config; unknown keys raise TypeError from the dataclass constructors."""
    return TargetConfig(**{**data, **{c: CohortKnobs(**data[c]) for c in COHORTS}})


def _patched(config: TargetConfig, patch: Any) -> TargetConfig:
    """Return ``config`` with a PATCH document deep-merged into it (cohorts merge knob by knob)."""
    if not isinstance(patch, dict):
        raise TypeError("expected a JSON object")
    merged = asdict(config)
    for key, value in patch.items():
        if key not in merged:
            raise TypeError(f"unknown key: {key}")
        merged[key] = {**merged[key], **value} if key in COHORTS and isinstance(value, dict) else value
    return _config_from_dict(merged)


@dataclass
class CohortCounters:
    started: int = 0  # valid start requests (each gets the fault draws)
    completed: int = 0  # terminal success sent
    http_5xx: int = 0
    http_429: int = 0
    stream_error: int = 0
    premature_close: int = 0
    stall: int = 0
    model_failed: int = 0  # vana-real: the model failed (legacy masks it as a success without content)
    model_limited: int = 0  # vana-real legacy: refused by the model limiter after its wait


@dataclass
class TargetStats:
    canonical: CohortCounters = field(default_factory=CohortCounters)
    legacy: CohortCounters = field(default_factory=CohortCounters)
    rate_limited: int = 0
    unauthorized: int = 0


@dataclass
class Target:
    url: str
    port: int
    config: TargetConfig
    stats: TargetStats
