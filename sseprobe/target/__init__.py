"""The built-in reference service: an aiohttp app emulating the canonical and legacy streaming endpoints,
with latency and fault knobs (``default``) and what the real backend was seen doing (``vana-real``)."""

from ._app import PROFILES, CohortKnobs, Target, TargetConfig, TargetStats, make_app
from ._serve import running_target, serve

__all__ = ["CohortKnobs", "TargetConfig", "TargetStats", "Target", "PROFILES", "make_app", "running_target", "serve"]
