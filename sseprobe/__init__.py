"""sseprobe: SSE streaming health prober and load generator."""

from ._outcomes import Outcome
from ._record import SessionRecord
from ._stats import CohortStats

__all__ = ["Outcome", "SessionRecord", "CohortStats"]
__version__ = "0.1.0"
