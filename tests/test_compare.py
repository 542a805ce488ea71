"""Evaluation presets and `janus compare`: reports of the same paired episodes side by side,
anything else refused before a file is written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from janus.cli import app
from janus.evaluation import (
    apply_evaluation_preset,
    evaluate,
    load_summary,
    make_plan,
    plan_episodes,
)
from janus.evaluation.compare import COMPARISON_FILES, compare_reports
from janus.strategies import held_out_pool
from test_evaluate import FakeAgent, small_config

KWARGS = dict(configurations=["base", "standard"], ablations=False, scripted_baselines=False)


@pytest.fixture(scope="module")
def two_reports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Two 'bases' (fake agents of different skill) on the same plan, one on another seed."""
    tmp = tmp_path_factory.mktemp("compare")
    good = evaluate(
        small_config(tmp, "good", **KWARGS),
        agent=FakeAgent(noise=0.01),
        base_agent=FakeAgent(ignore_rho=True),
    )
    poor = evaluate(
        small_config(tmp, "poor", **KWARGS),
        agent=FakeAgent(guess=250.0, noise=0.08),
        base_agent=FakeAgent(ignore_rho=True),
    )
    other = evaluate(
        small_config(tmp, "other", seed=8, **KWARGS),
        agent=FakeAgent(),
        base_agent=FakeAgent(ignore_rho=True),
    )
    return good.out_dir, poor.out_dir, other.out_dir


def test_comparison_holds_each_reports_own_headline_numbers(two_reports, tmp_path: Path) -> None:
    good, poor, _ = two_reports
    data = compare_reports([good, poor], tmp_path / "cmp", labels=["good", "poor"])
    for label, report in (("good", good), ("poor", poor)):
        summary = load_summary(report)
        row = next(r for r in data["reports"] if r["label"] == label)
        for key in ("mae", "spearman", "slope", "agreement_rate"):
            assert row[key] == getattr(summary.calibration, key)
        assert row["mae_ci"] == [summary.calibration.mae_ci.low, summary.calibration.mae_ci.high]
        assert tuple(p["rho"] for p in row["curve"]) == summary.run.rho_grid
        assert row["invalid_actions_all"] == summary.invalid_actions
    rows = {r["label"]: r for r in data["reports"]}
    assert rows["good"]["mae"] < rows["poor"]["mae"]  # the fakes differ as built
    assert data["episodes"] == len(plan_episodes(make_plan(small_config(tmp_path, **KWARGS))))
    written = json.loads((tmp_path / "cmp" / COMPARISON_FILES["json"]).read_text())
    assert written == json.loads(json.dumps(data))
    markdown = (tmp_path / "cmp" / COMPARISON_FILES["markdown"]).read_text()
    assert re.search(r"\|\s+good\s+\|\s+poor\s+\|", markdown)
    assert markdown.count("\n| 0.") + markdown.count("\n| 1.") == len(rows["good"]["curve"])
    png = (tmp_path / "cmp" / COMPARISON_FILES["plot"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_reports_of_other_episodes_are_refused_before_writing(two_reports, tmp_path: Path) -> None:
    good, _, other = two_reports
    with pytest.raises(ValueError, match=r"episodes\.csv:2: seed is .* same episodes"):
        compare_reports([good, other], tmp_path / "cmp")
    assert not (tmp_path / "cmp").exists()
    with pytest.raises(FileNotFoundError, match="not a janus evaluate report"):
        compare_reports([good, tmp_path], tmp_path / "cmp")
    with pytest.raises(ValueError, match="at least two"):
        compare_reports([good], tmp_path / "cmp")


def test_an_existing_comparison_is_replaced_only_with_overwrite(
    two_reports, tmp_path: Path
) -> None:
    good, poor, _ = two_reports
    out = tmp_path / "cmp"
    compare_reports([good, poor], out)
    with pytest.raises(FileExistsError, match="overwrite"):
        compare_reports([poor, good], out)
    compare_reports([poor, good], out, overwrite=True)
    labels = [
        r["label"] for r in json.loads((out / COMPARISON_FILES["json"]).read_text())["reports"]
    ]
    assert labels == ["poor", "good"]  # default labels: the report directories' names
    stranger = tmp_path / "notes"
    stranger.mkdir()
    (stranger / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        compare_reports([good, poor], stranger, overwrite=True)
    assert (stranger / "keep.txt").read_text() == "mine"


def test_compare_command_prints_the_table_and_errors_in_one_line(
    two_reports, tmp_path: Path
) -> None:
    good, poor, other = two_reports
    runner = CliRunner()
    result = runner.invoke(
        app, ["compare", str(good), str(poor), "--out", str(tmp_path / "c"), "--label", "A"]
    )
    assert result.exit_code == 2 and "1 labels for 2 reports" in result.output
    result = runner.invoke(app, ["compare", str(good), str(poor), "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert "calibration MAE" in result.output
    result = runner.invoke(app, ["compare", str(good), str(other), "--out", str(tmp_path / "d")])
    assert result.exit_code == 2
    assert "same episodes" in result.output and "Traceback" not in result.output


def test_cpu_real_preset_plays_the_held_out_opponents_without_ablations() -> None:
    config = apply_evaluation_preset("cpu-real", {"run": "runs/x", "seed": 3})
    assert tuple(config.opponents) == tuple(held_out_pool())
    assert not config.ablations and not config.scripted_baselines
    assert config.seed == 3 and config.dtype == "auto" and config.threads == 2
    plan = make_plan(config)
    specs = plan_episodes(plan)
    # 5 configurations + 11 sweep points, 5 opponents, 2 roles, 4 episodes a cell.
    assert len(specs) == (5 + 11) * len(held_out_pool()) * 2 * 4
    assert plan.channels == ("both",)
    # Explicit options win over the preset; None means "not given".
    assert apply_evaluation_preset("cpu-real", {"episodes_per_cell": 2}).episodes_per_cell == 2
    assert apply_evaluation_preset("cpu-real", {"ablations": None}).ablations is False
    assert apply_evaluation_preset(None, {}).episodes_per_cell == 4
    with pytest.raises(ValueError, match="unknown evaluation preset"):
        apply_evaluation_preset("gpu-huge")
    with pytest.raises(ValueError, match="unknown evaluation option"):
        apply_evaluation_preset("full", {"episodes": 3})
