"""The calibration map: monotone fit, exact inverse on its grid, save/load, use by the agent."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest

from janus.calibration import (
    CALIBRATION_FILE,
    CalibrationMap,
    fit_calibration_map,
    fit_role_curve,
)

GRID = tuple(round(i / 10, 1) for i in range(11))


def _rows(curve, role="seller", repeats=4, impasse_at=()):
    """Sweep rows whose mean achieved ρ at grid value g is ``curve(g)``."""
    rows = []
    for g in GRID:
        for i in range(repeats):
            achieved = None if g in impasse_at and i == 0 else curve(g) + (i - 1.5) * 0.01
            rows.append((role, g, achieved))
    return rows


def test_fitted_curve_is_monotone_even_when_the_means_are_not() -> None:
    # A compressed dial with a dip at 0.6: the isotonic fit pools the dip away.
    means = {g: 0.2 + 0.6 * g for g in GRID}
    means[0.6] = 0.3
    rows = _rows(lambda g: means[g])
    curve = fit_role_curve(GRID, [r[1] for r in rows], [r[2] for r in rows])
    assert all(b >= a for a, b in itertools.pairwise(curve.fitted))
    assert curve.raw_means[6] == pytest.approx(0.3)
    assert curve.fitted[0] == pytest.approx(0.2) and curve.fitted[-1] == pytest.approx(0.8)
    assert curve.reachable == (curve.fitted[0], curve.fitted[-1])


def test_inverse_hits_the_grid_it_was_fitted_on() -> None:
    rows = _rows(lambda g: 0.15 + 0.7 * g**1.3)
    curve = fit_role_curve(GRID, [r[1] for r in rows], [r[2] for r in rows])
    for g, f in zip(GRID, curve.fitted, strict=True):
        dial, inside = curve.inverse(f)
        assert inside and dial == pytest.approx(g, abs=1e-9)
        assert curve.forward(dial) == pytest.approx(f)
    # Between grid points the inverse interpolates and stays consistent with forward.
    dial, inside = curve.inverse(0.5)
    assert inside and curve.forward(dial) == pytest.approx(0.5)


def test_a_request_outside_the_reachable_range_is_said_not_hidden() -> None:
    rows = _rows(lambda g: 0.2 + 0.5 * g)
    curve = fit_role_curve(GRID, [r[1] for r in rows], [r[2] for r in rows])
    assert curve.inverse(0.05) == (0.0, False)
    assert curve.inverse(0.95) == (1.0, False)
    assert curve.inverse(curve.fitted[-1])[1] is True


def test_a_flat_run_maps_to_its_middle() -> None:
    rows = _rows(lambda g: min(0.1 + g, 0.6))  # flat at 0.6 from g = 0.5 on
    curve = fit_role_curve(GRID, [r[1] for r in rows], [r[2] for r in rows])
    dial, inside = curve.inverse(curve.fitted[-1])
    assert inside and dial == pytest.approx(0.75)  # middle of 0.5 .. 1.0


def test_impasses_do_not_enter_the_means_and_empty_cells_are_interpolated() -> None:
    rows = [r for r in _rows(lambda g: g) if r[1] != 0.3]  # no episode at 0.3
    rows += [("seller", 0.3, None)] * 3  # ... only impasses
    curve = fit_role_curve(GRID, [r[1] for r in rows], [r[2] for r in rows])
    assert math.isnan(curve.raw_means[3]) and curve.agreements[3] == 0
    assert curve.fitted[3] == pytest.approx((curve.fitted[2] + curve.fitted[4]) / 2)
    with pytest.raises(ValueError, match="fewer than 2 grid points"):
        fit_role_curve(GRID, [0.0, 0.5], [None, 0.4])


def test_map_round_trips_through_save_and_load(tmp_path: Path) -> None:
    rows = _rows(lambda g: 0.2 + 0.6 * g, "seller") + _rows(lambda g: 0.1 + 0.7 * g, "buyer")
    fitted = fit_calibration_map(rows, GRID, opponents=["linear", "boulware"], seed=3)
    path = fitted.save(tmp_path)
    assert path == tmp_path / CALIBRATION_FILE and not list(tmp_path.glob(".*tmp"))
    loaded = CalibrationMap.load(tmp_path)
    assert loaded is not None
    assert loaded.opponents == ("linear", "boulware") and loaded.seed == 3
    for role in ("buyer", "seller"):
        assert loaded.curve(role).fitted == pytest.approx(fitted.curve(role).fitted)
        assert loaded.inverse(0.4, role) == pytest.approx(fitted.inverse(0.4, role))
    assert loaded.reachable("buyer") != loaded.reachable("seller")
    assert CalibrationMap.load(tmp_path / "nothing-here") is None


def test_a_broken_or_foreign_map_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / CALIBRATION_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        CalibrationMap.load(tmp_path)
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a janus-calibration v1 file"):
        CalibrationMap.load(tmp_path)
    good = fit_calibration_map(_rows(lambda g: g), GRID, opponents=["linear"], seed=0).to_json()
    good["curves"]["seller"]["fitted"][3] = 0.9  # no longer monotone
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(good))
    with pytest.raises(ValueError, match="not monotone"):
        CalibrationMap.load(tmp_path)


def test_the_agent_plays_the_inverse_per_role_unless_raw() -> None:
    from janus.agent import JanusAgent
    from janus.tiny import build_model, build_tokenizer

    rows = _rows(lambda g: 0.2 + 0.6 * g, "seller") + _rows(lambda g: 0.1 + 0.4 * g, "buyer")
    calibration = fit_calibration_map(rows, GRID, opponents=["linear"], seed=0)
    tokenizer = build_tokenizer()
    from janus.examples import add_special_tokens

    add_special_tokens(tokenizer)
    model = build_model("tiny", tokenizer, seed=0)
    model.resize_token_embeddings(len(tokenizer))
    agent = JanusAgent(model, tokenizer, calibration=calibration)
    seller = agent.seat(0.5, role="seller")
    assert seller.dial_rho == pytest.approx(0.5, abs=0.006)  # (0.5 - 0.2) / 0.6
    buyer = agent.seat(0.3, role="buyer")
    assert buyer.dial_rho == pytest.approx(0.5, abs=0.006)  # (0.3 - 0.1) / 0.4
    assert buyer.text_rho == buyer.gate_rho == buyer.dial_rho
    far = agent.seat(0.9, role="buyer")  # the buyer's dial reaches 0.5 at most
    assert far.dial_rho == 1.0 and far.stats.outside_reachable == 1
    raw = agent.seat(0.3, role="buyer", calibrated=False)
    assert raw.dial_rho == 0.3 and raw.stats.outside_reachable == 0
    lazy = agent.seat(0.5)  # the role is learnt at the first decision
    with pytest.raises(RuntimeError, match="first decision"):
        _ = lazy.text_rho
    assert lazy.resolve("seller") == seller.dial_rho


def test_an_agent_with_other_rules_than_its_map_is_warned() -> None:
    import warnings

    from janus.agent import DEFAULT_RULES, JanusAgent
    from janus.examples import add_special_tokens
    from janus.tiny import build_model, build_tokenizer

    tokenizer = build_tokenizer()
    add_special_tokens(tokenizer)
    model = build_model("tiny", tokenizer, seed=0)
    model.resize_token_embeddings(len(tokenizer))

    def calibration(**details):
        return fit_calibration_map(
            _rows(lambda g: g, "seller"), GRID, opponents=["linear"], seed=0, details=details
        )

    with pytest.warns(UserWarning, match=r"fitted with rules accept_better; this agent plays"):
        JanusAgent(model, tokenizer, calibration=calibration(rules=["accept_better"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same rules, or a map that predates the record
        JanusAgent(model, tokenizer, calibration=calibration(rules=list(DEFAULT_RULES)))
        JanusAgent(model, tokenizer, calibration=calibration())
        JanusAgent(model, tokenizer, calibration=calibration(rules=[]), rules="none")
    # The price decoding a map was fitted with is checked the same way.
    with pytest.warns(
        UserWarning, match=r"fitted with price decoding mean; this agent plays greedy"
    ):
        JanusAgent(model, tokenizer, calibration=calibration(price_decoding="mean"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        JanusAgent(
            model, tokenizer, calibration=calibration(price_decoding="mean"), price_decoding="mean"
        )
    with pytest.raises(ValueError, match="price decoding must be one of greedy, mean"):
        JanusAgent(model, tokenizer, price_decoding="average")
