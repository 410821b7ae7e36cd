"""Open-model schedules are pure math: tested with no clock."""

from __future__ import annotations

import statistics

import pytest

from sseprobe.load.engine import interleave
from sseprobe.load.pacer import Phase, Schedule, constant, ramp, steps


def test_constant_rate_spaces_arrivals_evenly() -> None:
    times = list(constant(10, 2).arrivals())
    assert len(times) == 20
    gaps = {round(b - a, 9) for a, b in zip(times, times[1:], strict=False)}
    assert gaps == {0.1}
    assert 0 < times[0] < times[-1] < 2


def test_ramp_counts_and_accelerates() -> None:
    times = list(ramp(0, 100, 10).arrivals())
    assert len(times) == 500  # area under the ramp
    first_half = sum(1 for t in times if t < 5)
    assert first_half == 125  # a quarter of the arrivals in the first half of a ramp from 0
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps[0] > gaps[-1] * 10


def test_steps_and_phase_lookup() -> None:
    s = steps([10, 20, 40], 1.0)
    assert len(list(s.arrivals())) == 70
    assert s.rate_at(0.5) == 10 and s.rate_at(1.5) == 20 and s.rate_at(2.5) == 40
    assert s.rate_at(3.5) == 0
    at = s.phase_at(1.2)
    assert at is not None and at[0] == 1 and at[1].name == "step 2"


def test_time_of_inverts_arrivals_by() -> None:
    p = Phase(10, 5, 50)
    for n in (0.5, 10, 100, p.total - 1e-9):
        assert p.arrivals_by(p.time_of(n)) == pytest.approx(n)


def test_poisson_is_seeded_and_has_the_right_mean() -> None:
    s = Schedule((Phase(100, 20, 20),), poisson=True, seed=3)
    a, b = list(s.arrivals()), list(s.arrivals())
    assert a == b  # reproducible
    assert 2000 * 0.93 < len(a) < 2000 * 1.07
    gaps = [y - x for x, y in zip(a, a[1:], strict=False)]
    assert statistics.pstdev(gaps) == pytest.approx(statistics.mean(gaps), rel=0.1)  # exponential


def test_parts_split_the_arrivals_exactly() -> None:
    s = ramp(1, 30, 20)
    whole = list(s.arrivals())
    parts = sorted(
        list(s.arrivals(part=0, parts=3)) + list(s.arrivals(part=1, parts=3)) + list(s.arrivals(part=2, parts=3))
    )
    assert parts == whole


def test_bad_phases_are_refused() -> None:
    with pytest.raises(ValueError):
        Phase(0, 1, 1)
    with pytest.raises(ValueError):
        Phase(1, -1, 1)


def test_interleave_follows_weights_evenly() -> None:
    it = interleave([5, 95])
    picks = [next(it) for _ in range(100)]
    assert picks.count(0) == 5
    positions = [i for i, p in enumerate(picks) if p == 0]
    assert max(b - a for a, b in zip(positions, positions[1:], strict=False)) <= 21  # spread, not bunched
    it2 = interleave([1, 1])
    assert [next(it2) for _ in range(4)] in ([0, 1, 0, 1], [1, 0, 1, 0])
