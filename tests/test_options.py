"""One frozen options value holds every default; what was given travels beside it, never guessed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import sseprobe
from sseprobe._config import MAX_IN_FLIGHT, MAX_SESSIONS
from sseprobe.plan.options import OPTIONS, Options
from sseprobe.plan.resolve import resolve, until_decided_from
from sseprobe.plan.scenario import load_scenario

URLS = {"canonical_url": "http://127.0.0.1:9", "legacy_url": "http://127.0.0.1:9", "quiet": True}


def test_defaults_are_one_value_and_the_dict_is_derived_from_it() -> None:
    assert sseprobe.DEFAULTS == dataclasses.asdict(OPTIONS)
    assert OPTIONS.max_in_flight == MAX_IN_FLIGHT and sseprobe.Load(sessions=1).max_in_flight == MAX_IN_FLIGHT
    assert OPTIONS.max_sessions == MAX_SESSIONS
    with pytest.raises(dataclasses.FrozenInstanceError):
        OPTIONS.sessions = 3  # type: ignore[misc]


def test_a_flag_given_at_its_default_value_still_counts_as_given(tmp_path: Path) -> None:
    """--max-sessions 20000 without --until-decided is refused: given is what was given, not a guess
    from the value."""
    with pytest.raises(sseprobe.UsageProblem, match="--max-sessions needs --until-decided"):
        sseprobe.plan_from(None, {**URLS, "max_sessions": MAX_SESSIONS})
    plan = sseprobe.make_plan(None, Options(**URLS), frozenset(URLS))  # type: ignore[arg-type]
    assert plan.until_decided is None


def test_until_decided_from_leaves_its_input_alone(tmp_path: Path) -> None:
    path = tmp_path / "ends.toml"
    path.write_text("[load]\nsessions = 50\n")
    scenario = load_scenario(path)
    given = {"until_decided", "canonical_url", "legacy_url"}
    before = dataclasses.replace(OPTIONS, until_decided=True)
    resolved = resolve(before, given, scenario)
    notes: list[str] = []
    settings, after = until_decided_from(resolved.options, given, resolved.chosen, "compare", False, notes)
    assert settings is not None and resolved.options.sessions == 50  # the input is as it was
    assert after.sessions is None and "set aside" in notes[0]


def test_a_scenario_sets_options_and_they_count_as_chosen(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("[load]\nmax_in_flight = 9\nconcurrency = 4\n")
    resolved = resolve(OPTIONS, {"sessions"}, load_scenario(path))
    assert resolved.options.max_in_flight == 9 and OPTIONS.max_in_flight == MAX_IN_FLIGHT
    assert resolved.chosen == {"sessions", "max_in_flight", "concurrency"}
    assert resolved.closed_model == {"concurrency"}


def test_plan_from_defaults_still_work_but_are_deprecated() -> None:
    with pytest.warns(DeprecationWarning, match="make_plan"):
        plan = sseprobe.plan_from(None, {**URLS, "sessions": 4}, "compare", {"concurrency": 2})
    assert plan.load.concurrency == 4 and plan.load.sessions == 8  # per cohort, two cohorts


def test_unknown_names_are_bad_input() -> None:
    with pytest.raises(sseprobe.UsageProblem, match="unknown option.*sesions"):
        sseprobe.make_plan(None, OPTIONS, {"sesions"})
