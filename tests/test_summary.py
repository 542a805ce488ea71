"""The typed evaluation summary: what it writes is what it reads back, the version-3 layout
is pinned key by key, and a file of another version, with a missing field or a field of the
wrong type is refused in one line that names the file and the field."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from janus.cli import app
from janus.evaluation import EvaluationSummary, FormatError, evaluate, load_summary
from janus.evaluation.codec import Interval, Record
from janus.evaluation.compare import compare_reports
from janus.evaluation.harness import EpisodeRecord
from janus.evaluation.report import render_report
from janus.evaluation.summary_types import (
    FORMAT_VERSION,
    EpisodeMetrics,
    Habits,
    counter,
    sum_counters,
)
from test_evaluate import FakeAgent, small_config

KWARGS = dict(configurations=["base", "standard"], scripted_baselines=True, plots=True)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A report with held-out opponents, ablations, the base and scripted baselines, and one
    on in-pool opponents only (its held-out blocks are empty)."""
    tmp = tmp_path_factory.mktemp("summary")
    base = FakeAgent(ignore_rho=True)
    full = evaluate(small_config(tmp, "full", **KWARGS), agent=FakeAgent(), base_agent=base)
    pool = evaluate(
        small_config(tmp, "pool", opponents=["boulware", "fair"], **KWARGS),
        agent=FakeAgent(),
        base_agent=base,
    )
    return {"full": full.out_dir, "pool": pool.out_dir}


def _raw(report: Path) -> dict:
    return json.loads((report / "summary.json").read_text())


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(data))
    return path


def test_to_json_then_from_json_gives_the_same_summary(reports, tmp_path: Path) -> None:
    for report in reports.values():
        summary = load_summary(report)
        # The file is exactly what the typed summary writes, byte for byte.
        written = (report / "summary.json").read_text()
        assert written == json.dumps(summary.to_json(), indent=2, ensure_ascii=False) + "\n"
        again = EvaluationSummary.from_json(json.loads(json.dumps(summary.to_json())))
        assert again == summary
        assert load_summary(summary.write(tmp_path / "again.json")) == summary


def test_an_empty_subset_is_written_compactly_and_reads_back_empty(reports) -> None:
    summary = load_summary(reports["pool"])
    assert summary.headline_set == "all" and summary.calibration == summary.calibration_all
    standard = summary.configurations["standard"]
    assert standard.held_out == EpisodeMetrics.empty()
    assert standard.held_out.utility is None and standard.held_out.habits.walked_away == 0
    assert _raw(reports["pool"])["configurations"]["standard"]["held_out"] == {"episodes": 0}
    assert standard.in_pool.episodes == standard.all.episodes > 0


def test_the_layout_is_pinned_key_by_key(reports) -> None:
    # Changing any of these keys changes the file: bump FORMAT_VERSION with it.
    data = _raw(reports["full"])
    assert FORMAT_VERSION == data["format_version"] == 7
    assert list(data) == [
        "format", "format_version", "janus_version", "run", "headline_set", "calibration",
        "calibration_in_pool", "calibration_all", "calibrated", "calibration_raw", "ablations",
        "configurations", "invalid_actions", "invalid_actions_by_kind",
        "agreements_outside_zopa", "agreements_outside_zopa_by_kind", "habits", "safety",
        "concession", "timing",
    ]  # fmt: skip
    assert list(data["run"]) == [
        "adapter", "base_model", "agent", "base_agent", "safety", "temperature",
        "price_decoding", "device", "dtype", "batch_size", "threads", "held_out_check", "rules",
        "calibration_map", "seed",
        "episodes", "episodes_per_cell", "sweep_episodes_per_cell", "rho_grid", "opponents",
        "held_out_opponents", "in_pool_opponents", "configurations", "scripted_baselines",
        "channels", "ablation_fixed_rho", "domain", "bootstrap_resamples", "confidence",
        "tie_tolerance",
    ]  # fmt: skip
    metrics = [
        "episodes", "agreements", "agreement_rate", "agreement_rate_ci", "utility",
        "utility_ci", "utility_agreed", "utility_agreed_ci", "opponent_utility", "achieved_rho",
        "win_rate", "tie_rate", "loss_rate", "turns", "decisions", "invalid_actions",
        "invalid_action_rate", "safety_clamped_offers", "safety_refused_accepts",
        "agreements_outside_zopa", "rule_accept_better", "rule_accept_last_turn",
        "rule_accept_final_turn", "rule_concede_on_stall", "rule_reciprocate", "rule_no_retreat",
        "rule_fresh_offer",
        "rule_firm_opening",
        "repeated_offers", "repeated_offer_rate", "worse_counters", "retreats", "walked_away",
        "outside_reachable",
    ]  # fmt: skip
    standard = data["configurations"]["standard"]
    assert list(standard) == [
        "kind", "rho", *metrics, "held_out", "in_pool", "by_role", "vs_base", "by_opponent",
    ]  # fmt: skip
    assert list(standard["by_opponent"]["fair"]) == metrics
    assert list(data["configurations"]["base"])[:3] == ["kind", "rho", "episodes"]
    scripted = data["configurations"]["script:fair"]
    assert list(scripted)[:3] == ["kind", "strategy", "rho"] and scripted["rho"] is None
    assert "vs_base" in scripted and "vs_base" not in data["configurations"]["base"]
    assert list(data["calibration"]) == [
        "grid", "curve", "episodes", "agreements", "agreement_rate", "mae", "mae_ci",
        "grid_points_used", "per_episode_mae", "spearman", "slope", "slope_ci", "intercept",
        "monotonicity_violations", "by_role", "opponents",
    ]  # fmt: skip
    assert list(data["calibration"]["curve"][0]) == [
        "rho", "episodes", "agreements", "agreement_rate", "mean_achieved",
        "ci_low", "ci_high",
    ]  # fmt: skip
    assert list(data["calibration"]["by_role"]["buyer"]) == [
        "agreement_rate", "mae", "per_episode_mae", "spearman", "slope", "intercept",
        "monotonicity_violations", "means",
    ]  # fmt: skip
    assert list(data["habits"]["janus"]) == metrics[20:]
    assert list(data["concession"]) == ["channels", "position", "turns", "buyer", "seller"]
    assert len(data["calibration"]["mae_ci"]) == 2


def test_another_version_or_format_is_refused_in_one_line(reports, tmp_path: Path) -> None:
    data = _raw(reports["full"])
    path = _write(tmp_path, {**data, "format_version": 5})
    with pytest.raises(FormatError, match=r"format_version is 5; this Janus reads version 7") as e:
        load_summary(path)
    assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)
    with pytest.raises(FormatError, match="format_version is None"):
        load_summary(_write(tmp_path, {k: v for k, v in data.items() if k != "format_version"}))
    with pytest.raises(FormatError, match="not a janus evaluate summary"):
        load_summary(_write(tmp_path, {**data, "format": "janus-hyperlora"}))
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(FormatError, match=r"broken\.json: not valid JSON"):
        load_summary(tmp_path / "broken.json")


def test_a_missing_field_is_named_with_its_path(reports, tmp_path: Path) -> None:
    data = _raw(reports["full"])
    del data["configurations"]["standard"]["by_opponent"]["fair"]["walked_away"]
    path = _write(tmp_path, data)
    with pytest.raises(FormatError) as error:
        load_summary(path)
    message = str(error.value)
    assert (
        message == f"{path}: missing field configurations[standard].by_opponent[fair].walked_away"
    )
    data = _raw(reports["full"])
    del data["habits"]
    with pytest.raises(FormatError, match=r"summary.json: missing field habits$"):
        load_summary(_write(tmp_path, data))
    data = _raw(reports["full"])
    del data["calibration"]["curve"][3]["ci_low"]
    with pytest.raises(FormatError, match=r"missing field calibration\.curve\[3\]\.ci_low$"):
        load_summary(_write(tmp_path, data))


def test_a_field_of_the_wrong_type_is_named(reports, tmp_path: Path) -> None:
    data = _raw(reports["full"])
    data["run"]["seed"] = "seven"
    with pytest.raises(FormatError, match=r"field run\.seed should be an integer, not 'seven'"):
        load_summary(_write(tmp_path, data))
    data = _raw(reports["full"])
    data["calibration"]["mae_ci"] = [0.1]
    with pytest.raises(FormatError, match=r"calibration\.mae_ci should be an interval"):
        load_summary(_write(tmp_path, data))
    data = _raw(reports["full"])
    data["calibrated"] = 1
    with pytest.raises(FormatError, match=r"field calibrated should be true or false"):
        load_summary(_write(tmp_path, data))


def test_the_report_renders_the_same_from_the_file(reports) -> None:
    report = reports["full"]
    plots = {name: report / f"{name}.png" for name in ("calibration", "utility", "concession")}
    assert all(p.is_file() for p in plots.values())
    assert render_report(load_summary(report), plots) == (report / "report.md").read_text()


def test_compare_refuses_a_report_of_another_version(reports, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "episodes.csv").write_text((reports["full"] / "episodes.csv").read_text())
    (other / "summary.json").write_text(json.dumps({**_raw(reports["full"]), "format_version": 0}))
    with pytest.raises(FormatError, match="format_version is 0"):
        compare_reports([reports["full"], other], tmp_path / "cmp")
    assert not (tmp_path / "cmp").exists()
    result = CliRunner().invoke(
        app, ["compare", str(reports["full"]), str(other), "--out", str(tmp_path / "cmp")]
    )
    assert result.exit_code == 2 and "format_version is 0" in result.output
    assert "Traceback" not in result.output


def test_records_normalise_undefined_values_and_numpy_scalars() -> None:
    interval = Interval(low=float("nan"), high=np.float64(0.25))
    assert interval.low is None and type(interval.high) is float and not interval.defined
    assert 0.25 not in interval  # an undefined interval contains nothing
    assert list(Interval(low=0.0, high=1.0)) == [0.0, 1.0] and 0.5 in Interval(low=0, high=1)
    assert Interval.from_json([None, 0.25]) == interval
    assert interval.to_json() == [None, 0.25]


def test_counters_are_summed_from_the_episode_records_attributes() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Counts(Record):
        walked_away: int = counter()
        outside: int = counter("outside_zopa")

    @dataclass
    class Episode:
        walked_away: bool
        outside_zopa: int

    episodes = [Episode(True, 2), Episode(False, 1), Episode(True, 0)]
    assert sum_counters(Counts, episodes) == {"walked_away": 2, "outside": 3}
    assert sum_counters(Counts, []) == {"walked_away": 0, "outside": 0}
    # Every counter of the summary names an attribute (a field or property) of the record.
    for record in (Habits, EpisodeMetrics):
        for f in fields(record):
            if "counter" in f.metadata:
                source = f.name if f.metadata["counter"] is True else f.metadata["counter"]
                assert hasattr(EpisodeRecord, source), (record.__name__, f.name)
