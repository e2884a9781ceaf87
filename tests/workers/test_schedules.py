import pytest

from spx.workers.config import ScheduleConfig
from spx.workers.schedules import Constant, Cubic, OneShot, build_schedule


def test_cubic_values_at_given_steps():
    s = Cubic(final=0.9, begin=100, end=500, every=100)
    # s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3
    assert s.sparsity_at(0) == 0.0
    assert s.sparsity_at(100) == 0.0
    assert s.sparsity_at(200) == pytest.approx(0.9 - 0.9 * 0.75**3)
    assert s.sparsity_at(300) == pytest.approx(0.9 - 0.9 * 0.5**3)
    assert s.sparsity_at(350) == s.sparsity_at(300)  # held between updates
    assert s.sparsity_at(500) == 0.9
    assert s.sparsity_at(10_000) == 0.9


def test_cubic_updates_every_dt_and_at_the_end():
    s = Cubic(final=0.5, begin=10, end=45, every=10)
    assert [t for t in range(60) if s.should_update(t)] == [10, 20, 30, 40, 45]
    assert s.sparsity_at(45) == 0.5


def test_build_schedule_turns_fractions_into_steps():
    s = build_schedule(ScheduleConfig(start=0.25, end=0.75, every=5), 0.8, total_steps=100)
    assert s == Cubic(final=0.8, begin=25, end=75, every=5)
    last = build_schedule(ScheduleConfig(start=0.5, end=1.0), 0.8, total_steps=100)
    assert last.end == 99  # the target is reached before training ends
    assert build_schedule(ScheduleConfig(start=0.3, end=0.3), 0.7, 10) == OneShot(0.7, at=3)
    assert build_schedule(ScheduleConfig(kind="constant"), 0.7, 10) == Constant(0.7)


def test_start_after_end_is_rejected():
    with pytest.raises(ValueError, match="start must not exceed end"):
        ScheduleConfig(start=0.8, end=0.2)
