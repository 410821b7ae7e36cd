"""Policy: defaults from the checklist, strict TOML overrides, absolute rollback triggers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sseprobe.verdict.policy import (
    DEFAULT_POLICY,
    FiredTrigger,
    MetricRule,
    Policy,
    PolicyError,
    Trigger,
    censored_count,
    check_triggers,
    load_policy,
    metric_value,
    parse_quantile_name,
    trigger_alpha,
)
from sseprobe.verdict.stats import CohortStats

ROOT = Path(__file__).resolve().parent.parent


def stats(
    n: int = 100,
    *,
    connected: int | None = None,
    ok: int | None = None,
    s5xx: int = 0,
    timeouts: int = 0,
    ttfe_ms: float = 200.0,
) -> CohortStats:
    s = CohortStats(sessions=n, connected=n if connected is None else connected)
    ok = s.connected - timeouts if ok is None else ok
    s.outcomes.update({"ok": ok, "timeout": timeouts, "http_error": s5xx, "connect_error": n - ok - timeouts - s5xx})
    s.http_status.update({"200": s.connected, "503": s5xx})
    for _ in range(s.connected):
        s.histograms["ttfe_us"].record_value(int(ttfe_ms * 1000))
    return s


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "policy.toml"
    p.write_text(text)
    return p


# --- defaults -----------------------------------------------------------------------------------


def test_default_policy_follows_the_checklist() -> None:
    names = [m.name for m in DEFAULT_POLICY.metrics]
    assert names == [
        "connect_success_rate",
        "ttfe_p50_ms",
        "ttfe_p95_ms",
        "ttfe_p99_ms",
        "first_event_p95_ms",
        "completion_p95_ms",
        "completion_rate",
        "error_rate_5xx",
        "timeout_rate",
    ]
    critical = {m.name for m in DEFAULT_POLICY.metrics if m.critical}
    assert critical == {"connect_success_rate", "ttfe_p95_ms", "completion_rate", "error_rate_5xx", "timeout_rate"}
    assert all((m.yellow, m.red) == (0.05, 0.10) for m in DEFAULT_POLICY.metrics)
    trig = {t.name: (t.metric, t.op, t.threshold) for t in DEFAULT_POLICY.triggers}
    assert trig == {
        "connect_success": ("connect_success_rate", "<", 0.95),
        "error_rate_5xx": ("error_rate_5xx", ">", 0.05),
        "ttfe_p95": ("ttfe_p95_ms", ">", 5000.0),
        "timeout_rate": ("timeout_rate", ">", 0.10),
        "completion_rate": ("completion_rate", "<", 0.95),
    }
    assert DEFAULT_POLICY.confidence == 0.99 and DEFAULT_POLICY.min_sessions == 20
    p95 = DEFAULT_POLICY.metric("ttfe_p95_ms")
    assert (p95.kind, p95.source, p95.percentile, p95.higher_is_better) == ("quantile", "ttfe_us", 95.0, False)
    assert DEFAULT_POLICY.metric("connect_success_rate").higher_is_better


def test_scenario_file_is_the_default_policy() -> None:
    assert load_policy(ROOT / "scenarios" / "policy-default.toml") == DEFAULT_POLICY


def test_empty_file_is_the_default_policy(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path, "")) == DEFAULT_POLICY


# --- overrides ----------------------------------------------------------------------------------


def test_overrides(tmp_path: Path) -> None:
    p = load_policy(
        write(
            tmp_path,
            """
confidence = 0.95
min_sessions = 100
yellow = 0.03
red = 0.08

[metrics.ttfe_p95_ms]
red = 0.2
critical = false

[metrics.ttfe_p99_ms]
enabled = false

[metrics.headers_p90_ms]
kind = "quantile"
histogram = "headers_us"
percentile = 90
critical = true

[triggers.error_rate_5xx]
threshold = 0.01

[triggers.timeout_rate]
enabled = false

[triggers.lag]
metric = "lag_p99_ms"
op = ">="
threshold = 250
""",
        )
    )
    assert p.confidence == 0.95 and p.min_sessions == 100 and p.power == DEFAULT_POLICY.power
    names = [m.name for m in p.metrics]
    assert "ttfe_p99_ms" not in names and names[-1] == "headers_p90_ms"
    p95 = p.metric("ttfe_p95_ms")
    assert (p95.yellow, p95.red, p95.critical) == (0.03, 0.2, False)
    assert p.metric("connect_success_rate").yellow == 0.03 and p.metric("completion_rate").red == 0.08
    new = p.metric("headers_p90_ms")
    assert (new.source, new.percentile, new.critical, new.yellow, new.red) == ("headers_us", 90.0, True, 0.03, 0.08)
    trig = {t.name: t for t in p.triggers}
    assert trig["error_rate_5xx"].threshold == 0.01 and "timeout_rate" not in trig
    assert trig["lag"] == Trigger("lag", "lag_p99_ms", ">=", 250.0)


def test_rate_metric_can_be_added_under_a_new_name(tmp_path: Path) -> None:
    p = load_policy(
        write(
            tmp_path,
            '[metrics.timeouts_strict]\nkind = "rate"\nrate = "timeout_rate"\n'
            "yellow = 0.01\nred = 0.02\nrate_floor = 0.5\n",
        )
    )
    m = p.metric("timeouts_strict")
    assert (m.kind, m.source, m.higher_is_better, m.rate_floor) == ("rate", "timeout_rate", False, 0.5)


@pytest.mark.parametrize(
    "text,key,expected",
    [
        ("confidnce = 0.9", "confidnce", "known key"),
        ('confidence = "high"', "confidence", "number in [0.5, 1)"),
        ("confidence = true", "confidence", "number in [0.5, 1)"),
        ("confidence = 1.0", "confidence", "number in [0.5, 1)"),
        ("min_sessions = 2.5", "min_sessions", "integer >= 1"),
        ("metrics = 3", "metrics", "a table"),
        ("[metrics.ttfe_p95_ms]\nredd = 0.2", "metrics.ttfe_p95_ms.redd", "known key"),
        ('[metrics.ttfe_p95_ms]\ncritical = "yes"', "metrics.ttfe_p95_ms.critical", "true or false"),
        ("[metrics.ttfe_p95_ms]\nyellow = 0.2", "metrics.ttfe_p95_ms", "yellow < red"),
        ("yellow = 0.2", "yellow", "yellow < red"),
        ("[metrics.ttfe_p95_ms]\npercentile = 100", "metrics.ttfe_p95_ms.percentile", "(0, 100)"),
        ('[metrics.ttfe_p95_ms]\nhistogram = "ttfb_us"', "metrics.ttfe_p95_ms.histogram", "one of"),
        ('[metrics.ttfe_p95_ms]\nrate = "timeout_rate"', "metrics.ttfe_p95_ms.rate", "no 'rate' key"),
        ("[metrics.brand_new]\nred = 0.2", "metrics.brand_new.kind", "for a new metric"),
        ('[metrics.brand_new]\nkind = "quantile"\nhistogram = "ttfe_us"', "metrics.brand_new.percentile", "(0, 100)"),
        ('[metrics.brand_new]\nkind = "rate"\nrate = "happiness"', "metrics.brand_new.rate", "one of"),
        ('[triggers.ttfe_p95]\nop = "=>"', "triggers.ttfe_p95.op", "one of"),
        ('[triggers.new_one]\nmetric = "timeout_rate"', "triggers.new_one", "metric, op and threshold"),
        ('[triggers.ttfe_p95]\nmetric = "ttfe_p95"', "triggers.ttfe_p95", "like 'ttfe_p95_ms'"),
        ('[triggers.ttfe_p95]\nthreshold = "5s"', "triggers.ttfe_p95.threshold", "a number"),
    ],
)
def test_errors_name_file_key_and_expectation(tmp_path: Path, text: str, key: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: {key}") and expected in msg and "\n" not in msg
    assert isinstance(err.value, ValueError)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(tmp_path / "missing.toml")
    with pytest.raises(PolicyError, match="invalid TOML"):
        load_policy(write(tmp_path, "confidence = "))


def test_objects_validate_themselves() -> None:
    with pytest.raises(ValueError):
        MetricRule("x", "quantile", "ttfe_us", percentile=None)
    with pytest.raises(ValueError):
        MetricRule("x", "rate", "timeout_rate", higher_is_better=True)
    with pytest.raises(ValueError):
        MetricRule("x", "median", "ttfe_us")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Trigger("t", "timeout_rate", "!=", 0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Policy(metrics=DEFAULT_POLICY.metrics * 2, triggers=())
    with pytest.raises(ValueError):
        Policy(metrics=(), triggers=(), power=1.0)


# --- values and triggers ------------------------------------------------------------------------


def test_metric_values() -> None:
    s = stats(200, connected=190, s5xx=10, timeouts=19, ttfe_ms=321.0)
    assert metric_value(s, "connect_success_rate") == pytest.approx(0.95)
    assert metric_value(s, "error_rate_5xx") == pytest.approx(0.05)
    assert metric_value(s, "timeout_rate") == pytest.approx(0.095)
    assert metric_value(s, "completion_rate") == pytest.approx(171 / 200)
    assert metric_value(s, "ttfe_p95_ms") == pytest.approx(321.0, rel=1e-3)
    assert metric_value(s, "ttfe_p95_ms") == s.histograms["ttfe_us"].get_value_at_percentile(95) / 1000
    assert metric_value(CohortStats(), "timeout_rate") is None
    assert metric_value(CohortStats(), "ttfe_p95_ms") is None
    assert parse_quantile_name("completion_p99.9_ms") == ("completion_us", 99.9)
    assert parse_quantile_name("ttfe_p100_ms") is None and parse_quantile_name("nope_p95_ms") is None
    with pytest.raises(ValueError):
        metric_value(s, "happiness")


def test_healthy_cohort_fires_nothing_and_empty_cohort_nothing() -> None:
    assert check_triggers(stats(200, connected=199, timeouts=1), DEFAULT_POLICY) == []
    assert check_triggers(CohortStats(), DEFAULT_POLICY) == []


def test_triggers_fire_on_their_bounds_not_on_raw_values() -> None:
    # raw values past every limit, but 100 sessions cannot show it at the trigger's level (0.2 %)
    for small in (stats(100, connected=94), stats(100, timeouts=11)):  # 94 % connected; 11 % timed out
        assert check_triggers(small, DEFAULT_POLICY) == []
    # 2,000 sessions with the same shares past the limits by 40-50 %: each bound is past too
    big = stats(2000, connected=1860, s5xx=150, timeouts=300, ttfe_ms=5100.0)
    by = {t.name: t for t in check_triggers(big, DEFAULT_POLICY)}
    assert set(by) == {"connect_success", "error_rate_5xx", "timeout_rate", "ttfe_p95", "completion_rate"}
    t = by["connect_success"]
    assert isinstance(t, FiredTrigger) and t.value == pytest.approx(0.93)
    assert t.bound is not None and t.value < t.bound < 0.95  # the upper bound of the success rate
    assert t.reason.startswith("connect_success_rate 93.00 % < 95.00 % (99.8 % upper bound 94.")
    assert by["ttfe_p95"].bound is not None and 5000.0 < by["ttfe_p95"].bound <= by["ttfe_p95"].value + 1e-9
    assert set(by["timeout_rate"].to_dict()) == {"name", "metric", "op", "threshold", "value", "reason", "bound"}
    assert trigger_alpha(DEFAULT_POLICY) == pytest.approx(0.002)  # 1 % shared by the five triggers


def test_completion_trigger_counts_empty_sessions_as_failures() -> None:
    assert check_triggers(stats(2000, ok=1900), DEFAULT_POLICY) == []
    fired = check_triggers(stats(2000, ok=1820), DEFAULT_POLICY)  # 91 %: its upper bound ~92.6 %
    assert [t.name for t in fired] == ["completion_rate"]
    hollow = stats(2000)  # every session connected and "succeeded", a tenth without any answer
    hollow.outcomes.update({"ok": -200, "empty": 200})
    assert [t.name for t in check_triggers(hollow, DEFAULT_POLICY)] == ["completion_rate"]
    assert metric_value(hollow, "completion_rate") == pytest.approx(0.90)


def test_time_to_first_answer_counts_a_session_that_never_answered_as_never() -> None:
    """8 % of sessions timed out without an answer: the p95 is 'never', whatever the answered ones
    took (and its lower bound too: at 2,000 sessions 6 % would not show past 5 % at the trigger's
    level). Failures that are no wait (5xx) are the rates' to judge, not counted as never."""
    s = stats(2000, timeouts=160, ttfe_ms=200.0)
    s.histograms["ttfe_us"].reset()
    for _ in range(1840):
        s.histograms["ttfe_us"].record_value(200_000)
    assert censored_count(s, "ttfe_us") == 160 and censored_count(s, "completion_us") == 0
    assert metric_value(s, "ttfe_p95_ms") == math.inf
    assert "ttfe_p95" in [t.name for t in check_triggers(s, DEFAULT_POLICY)]
    failed = stats(2000, connected=1840, ttfe_ms=200.0)  # 8 % refused: no wait, no TTFE
    assert censored_count(failed, "ttfe_us") == 0 and metric_value(failed, "ttfe_p95_ms") == pytest.approx(
        200.0, rel=1e-3
    )


def test_critical_error_when_nothing_connects() -> None:
    flag_off = CohortStats(sessions=5)
    flag_off.outcomes["http_error"] = 5
    flag_off.http_status["501"] = 5
    fired = check_triggers(flag_off, DEFAULT_POLICY)
    assert fired[0].name == "critical_error" and "ENABLE_ADK_CANONICAL_STREAM" in fired[0].reason
    refused = CohortStats(sessions=3)
    refused.outcomes["connect_error"] = 3
    fired = check_triggers(refused, DEFAULT_POLICY)
    assert fired[0].name == "critical_error" and "connect_error 3" in fired[0].reason
    assert any(t.name == "connect_success" for t in fired)  # 3 of 3 failed: even the bound says so
