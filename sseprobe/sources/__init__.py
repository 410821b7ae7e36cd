"""Real traffic as input: request logs and metric stores folded into CohortStats, judged by the same
``verdict.compare`` as a live comparison (docs/real-traffic.md). Never touches the load or wire stages."""

from .judge import Judged, judge, judge_logs, time_notes
from .logmap import LogMap, SourceError, read_log_map
from .logs import LogRead, Window, read_logs
from .window import parse_duration, window_from

__all__ = [
    "Judged",
    "LogMap",
    "LogRead",
    "SourceError",
    "Window",
    "judge",
    "judge_logs",
    "parse_duration",
    "read_log_map",
    "read_logs",
    "time_notes",
    "window_from",
]
