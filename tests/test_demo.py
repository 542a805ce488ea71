"""`janus demo --fast`: every stage of the pipeline runs and the report is complete."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from janus.cli import app


def test_fast_demo_runs_every_stage_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--fast", "--workdir", str(tmp_path / "work"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output[-3000:]
    for stage in ("generate", "prepare", "base", "train", "evaluate"):
        assert f"== {stage}" in result.output
    assert f"report: {out}" in result.output
    summary = json.loads((out / "summary.json").read_text())
    for key in ("mae", "spearman", "slope"):
        assert key in summary["calibration"]
    assert "invalid_actions" in summary and "agreements_outside_zopa" in summary
    assert summary["agreements_outside_zopa"] == 0  # safety is on
    assert (out / "episodes.csv").stat().st_size > 0
    assert (out / "report.md").read_text().strip()
    assert list(out.glob("*.png")), "no plots"
    assert (tmp_path / "work" / "run" / "adapter" / "adapter_config.json").is_file()


def test_fast_smollm2_demo_reuses_the_converted_base_and_plays_in_bf16(
    tmp_path: Path, smollm2_base: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "smollm2-135m").symlink_to(smollm2_base, target_is_directory=True)
    out = tmp_path / "reports" / "smollm2"
    result = CliRunner().invoke(
        app,
        ["demo", "--fast", "--base", "smollm2", "--workdir", str(work), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output[-3000:]
    assert "reusing" in result.output  # no second conversion
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["dtype"] == "torch.bfloat16"  # cpu-real trains and plays in bf16
    assert summary["run"]["held_out_opponents"] == ["conceder_fast", "micro_coarse"]
    assert summary["run"]["base_model"] is None  # the cpu-real fast run skips the base config
    config = json.loads((work / "run" / "train_config.json").read_text())
    assert config["bf16"] is True and config["max_steps"] == 2
    assert summary["agreements_outside_zopa"] == 0


def test_unknown_demo_base_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--base", "gpt5", "--workdir", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown demo base 'gpt5'" in result.output
