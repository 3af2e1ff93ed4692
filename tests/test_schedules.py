"""forgetting.schedules: piecewise-linear LR schedules in fractional epochs."""

from __future__ import annotations

import pytest

from forgetting import config
from forgetting.errors import UserError
from forgetting.schedules import PiecewiseLinear, triangle, warmup_constant


def test_part1_by_hand():
    s = PiecewiseLinear(config.PRESETS["part1"]["lr_knots"])
    assert s(0) == 0
    assert s(7.5) == pytest.approx(0.05)
    assert s(15) == pytest.approx(0.1)
    assert s(22.5) == pytest.approx((0.1 + 0.005) / 2)
    assert s(30) == pytest.approx(0.005)
    assert s(32.5) == pytest.approx(0.0025)
    assert s(35) == 0
    assert s(1 / 3) == pytest.approx(0.1 / 45)  # a fractional epoch, as evaluated every step


@pytest.mark.parametrize("preset", list(config.PRESETS))
def test_preset_knots_and_midpoints(preset):
    knots = config.PRESETS[preset]["lr_knots"]
    s = PiecewiseLinear(knots)
    for e, v in knots:
        assert s(e) == pytest.approx(v, abs=1e-12)
    for (e0, v0), (e1, v1) in zip(knots, knots[1:]):
        assert s((e0 + e1) / 2) == pytest.approx((v0 + v1) / 2, abs=1e-12)
        assert s(e0 + (e1 - e0) / 4) == pytest.approx(v0 + (v1 - v0) / 4, abs=1e-12)
    # outside the knots the schedule is held at the end values
    assert s(-1) == pytest.approx(knots[0][1]) and s(knots[-1][0] + 5) == pytest.approx(knots[-1][1])
    # every preset ends at 0 and its schedule covers exactly its epochs
    assert knots[-1] == (config.PRESETS[preset]["epochs"], 0)


@pytest.mark.parametrize(
    "preset,epoch,value",
    [
        ("part2", 15, 0.44),
        ("part2", 7.5, 0.22),
        ("part2", 30, 0.005),
        ("part2", 35, 0.0),
        ("part3", 8, 0.6),
        ("part3", 4, 0.3),
        ("part3", 19, 0.3),
        ("part3", 30, 0.0),
        ("part4", 5, 0.4),
        ("part4", 2.5, 0.2),
        ("part4", 14.5, 0.2),
        ("part4", 24, 0.0),
    ],
)
def test_presets_by_hand(preset, epoch, value):
    assert PiecewiseLinear(config.PRESETS[preset]["lr_knots"])(epoch) == pytest.approx(value, abs=1e-12)


def test_call_returns_python_float():
    v = PiecewiseLinear(((0, 0), (1, 1)))(0.5)
    assert type(v) is float and v == 0.5


def test_warmup_constant():
    s = warmup_constant(0.4, 5, 30)
    assert s.knots == ((0.0, 0.0), (5.0, 0.4), (30.0, 0.4))
    assert s(0) == 0 and s(2.5) == pytest.approx(0.2) and s(5) == pytest.approx(0.4)
    assert s(17.5) == pytest.approx(0.4) and s(30) == pytest.approx(0.4)
    flat = warmup_constant(0.3, 0, 10)  # no warm-up: constant from the start
    assert flat(0) == pytest.approx(0.3) and flat(10) == pytest.approx(0.3)
    ramp = warmup_constant(0.3, 12, 10)  # warm-up longer than the run: a ramp to the peak at the end
    assert ramp(0) == 0 and ramp(5) == pytest.approx(0.15) and ramp(10) == pytest.approx(0.3)


def test_triangle():
    s = triangle(0.4, 30)
    assert s(0) == 0
    assert s(4) == pytest.approx(0.2)
    assert s(8) == pytest.approx(0.4)
    assert s(19) == pytest.approx(0.2)
    assert s(30) == pytest.approx(0.0, abs=1e-15)
    short = triangle(0.6, 15)
    assert short.knots[1][0] == pytest.approx(4.0) and short(4) == pytest.approx(0.6)
    assert short(9.5) == pytest.approx(0.3)
    custom = triangle(1.0, 10, rise_fraction=0.5)
    assert custom(5) == pytest.approx(1.0) and custom(2.5) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "knots",
    [
        (),
        ((0, 0.1),),
        ((0, 0), (0, 1)),
        ((0, 0), (5, 1), (5, 0)),
        ((0, 0), (10, 1), (5, 0)),
        ((3, 0), (1, 1)),
    ],
)
def test_bad_knots_raise(knots):
    with pytest.raises(UserError):
        PiecewiseLinear(knots)


def test_bad_knots_rejected_by_train_config():
    with pytest.raises(UserError):
        config.TrainConfig(lr_knots=((0, 0), (0, 1)))
    with pytest.raises(UserError):
        config.TrainConfig(lr_knots=((0, 0), (5, -0.1)))
