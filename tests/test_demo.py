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
