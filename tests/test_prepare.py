"""prepare: exact columns, causal history, trajectory-level splits, and validation that names
the file, the line and the field and writes nothing."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from janus.dataset import DatasetReader, DataValidationError
from janus.domain import PRICE_HIGH, PRICE_LOW
from janus.generate import generate
from janus.prepare import (
    DECISION_STEPS_FILE,
    META_FILE,
    TRAJECTORY_OUTCOMES_FILE,
    assign_split,
    prepare,
)
from janus.schema import REASONS

REQUIRED_COLUMNS = {
    "trajectory_id": pa.string(),
    "step": pa.int32(),
    "role": pa.string(),
    "turn": pa.int32(),
    "turns_remaining": pa.int32(),
    "max_turns": pa.int32(),
    "reservation_norm": pa.float64(),
    "last_offer_norm": pa.float64(),
    "history_roles": pa.list_(pa.string()),
    "history_prices_norm": pa.list_(pa.float64()),
    "target_action": pa.string(),
    "target_price_norm": pa.float64(),
    "rho_train": pa.float64(),
    "split": pa.string(),
}


def norm(price: float) -> float:
    return (price - PRICE_LOW) / (PRICE_HIGH - PRICE_LOW)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """~250 episodes with impasses kept, so both labels appear."""
    path = tmp_path_factory.mktemp("corpus") / "episodes.jsonl"
    summary = generate(path, episodes=250, seed=21, include_impasse=True, progress=False)
    assert summary.impasses > 0 and summary.agreements > 0
    return path


@pytest.fixture(scope="module")
def prepared(corpus: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prep") / "prepared"
    prepare(corpus, out, k=4, val_fraction=0.2, test_fraction=0.2)
    return out


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------------- the tables


def test_decision_steps_columns_and_types_are_exact(prepared: Path, corpus: Path) -> None:
    table = pq.read_table(prepared / DECISION_STEPS_FILE)
    schema = table.schema
    for name, type_ in REQUIRED_COLUMNS.items():
        assert schema.field(name).type.equals(type_), name
    assert schema.names[: len(REQUIRED_COLUMNS)] == list(REQUIRED_COLUMNS)
    for extra in (
        "reservation_price",
        "price_low",
        "price_high",
        "outcome",
        "buyer_strategy",
        "seller_strategy",
        "first_mover",
        "seed",
    ):
        assert extra in schema.names
    source = read_records(corpus)
    assert table.num_rows == len(source)
    rows = table.to_pylist()
    for row, record in zip(rows, source, strict=True):
        assert row["trajectory_id"] == record["trajectory_id"]
        assert row["step"] == record["step"] and row["turn"] == record["step"] + 1
        assert row["turns_remaining"] == row["max_turns"] - row["turn"]
        assert row["reservation_norm"] == record["reservation_norm"]
        assert row["target_action"] == record["action"]
        if record["action"] == "ACCEPT":
            assert row["target_price_norm"] is None
        else:
            assert row["target_price_norm"] == pytest.approx(norm(record["offer_price"]))
        if record["last_offer_price"] is None:
            assert row["step"] == 0 and row["last_offer_norm"] is None
        else:
            assert row["last_offer_norm"] == pytest.approx(norm(record["last_offer_price"]))
        expected_rho = record["rho_outcome"] if record["outcome"] == "agreement" else -1.0
        assert row["rho_train"] == expected_rho
        assert row["seed"] == record["seed"] and row["outcome"] == record["outcome"]


def test_history_is_causal_and_windowed(prepared: Path) -> None:
    rows = pq.read_table(prepared / DECISION_STEPS_FILE).to_pylist()
    by_trajectory: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_trajectory[row["trajectory_id"]].append(row)
    for steps in by_trajectory.values():
        for i, row in enumerate(steps):
            earlier = [(s["role"], s["target_price_norm"]) for s in steps[:i]]
            expected = earlier[-4:]  # k = 4
            got = list(zip(row["history_roles"], row["history_prices_norm"], strict=True))
            assert got == expected
            assert len(got) == min(i, 4)
            if got:
                assert row["last_offer_norm"] == got[-1][1]


def test_rho_train_labels(prepared: Path) -> None:
    table = pq.read_table(prepared / DECISION_STEPS_FILE)
    for row in table.to_pylist():
        if row["outcome"] == "impasse":
            assert row["rho_train"] == -1.0
        else:
            assert 0.0 <= row["rho_train"] <= 1.0


def test_split_is_per_trajectory_and_roughly_proportional(prepared: Path) -> None:
    steps = pq.read_table(prepared / DECISION_STEPS_FILE, columns=["trajectory_id", "split"])
    splits: dict[str, set[str]] = defaultdict(set)
    for tid, split in zip(
        *(steps.column(c).to_pylist() for c in ("trajectory_id", "split")), strict=True
    ):
        splits[tid].add(split)
    assert all(len(s) == 1 for s in splits.values())
    assigned = {tid: s.pop() for tid, s in splits.items()}
    assert all(assign_split(tid, 0.2, 0.2) == split for tid, split in assigned.items())
    counts = Counter(assigned.values())
    n = len(assigned)
    assert set(counts) == {"train", "val", "test"}
    assert abs(counts["test"] / n - 0.2) < 0.08 and abs(counts["val"] / n - 0.2) < 0.08
    # larger val fraction never moves a test trajectory
    assert all(assign_split(t, 0.5, 0.2) == "test" for t, s in assigned.items() if s == "test")


def test_trajectory_outcomes_and_meta(prepared: Path, corpus: Path) -> None:
    outcomes = pq.read_table(prepared / TRAJECTORY_OUTCOMES_FILE).to_pylist()
    trajectories = list(DatasetReader(corpus))
    assert len(outcomes) == len(trajectories)
    steps = pq.read_table(prepared / DECISION_STEPS_FILE, columns=["trajectory_id", "split"])
    split_of = dict(
        zip(*(steps.column(c).to_pylist() for c in ("trajectory_id", "split")), strict=True)
    )
    for row, trajectory in zip(outcomes, trajectories, strict=True):
        records = trajectory.records
        assert row["trajectory_id"] == trajectory.trajectory_id
        assert row["agreement"] == trajectory.agreement
        assert row["turns"] == len(records)
        assert row["rho"] == (trajectory.rho if trajectory.agreement else -1.0)
        assert row["final_price"] == trajectory.final_price
        buyer = next(r for r in records if r["role"] == "buyer")["reservation_price"]
        seller = next(r for r in records if r["role"] == "seller")["reservation_price"]
        assert (row["buyer_reservation"], row["seller_reservation"]) == (buyer, seller)
        assert row["buyer_strategy"] == records[0]["buyer_strategy"]
        assert row["split"] == split_of[row["trajectory_id"]]
        if trajectory.agreement:
            assert math.isclose(
                (row["final_price"] - seller) / (buyer - seller), row["rho"], abs_tol=1e-9
            )
    meta = json.loads((prepared / META_FILE).read_text())
    assert meta["k"] == 4 and meta["val_fraction"] == 0.2 and meta["test_fraction"] == 0.2
    assert sum(meta["trajectories"].values()) == len(outcomes)
    assert sum(meta["rows"].values()) == len(read_records(corpus))
    assert meta["source"]["name"] == corpus.name
    assert meta["source"]["bytes"] == corpus.stat().st_size
    assert meta["janus_version"]


def test_small_blocks_give_the_same_tables(corpus: Path, prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "small"
    prepare(corpus, out, k=4, val_fraction=0.2, test_fraction=0.2, block_bytes=16384)
    for name in (DECISION_STEPS_FILE, TRAJECTORY_OUTCOMES_FILE):
        small, big = pq.read_table(out / name), pq.read_table(prepared / name)
        assert small.equals(big), name
    # streaming: one row group per block
    assert pq.ParquetFile(out / DECISION_STEPS_FILE).num_row_groups > 10


def test_blank_lines_are_tolerated(corpus: Path, prepared: Path, tmp_path: Path) -> None:
    lines = corpus.read_text().splitlines()
    spaced = tmp_path / "spaced.jsonl"
    spaced.write_text("\n".join([*lines[:10], "", "  ", *lines[10:]]) + "\n\n")
    out = tmp_path / "p"
    prepare(spaced, out, k=4, val_fraction=0.2, test_fraction=0.2)
    assert pq.read_table(out / DECISION_STEPS_FILE).equals(
        pq.read_table(prepared / DECISION_STEPS_FILE)
    )


def test_existing_outputs_need_overwrite(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare(corpus, out)
    (out / "notes.txt").write_text("mine")
    before = (out / DECISION_STEPS_FILE).read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        prepare(corpus, out, k=2)
    assert (out / DECISION_STEPS_FILE).read_bytes() == before
    prepare(corpus, out, k=2, overwrite=True)
    assert json.loads((out / META_FILE).read_text())["k"] == 2
    assert (out / "notes.txt").read_text() == "mine"  # other files are left alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_bad_options(corpus: Path, tmp_path: Path) -> None:
    for kwargs in (
        {"k": 0},
        {"val_fraction": -0.1},
        {"test_fraction": 1.0},
        {"val_fraction": 0.6, "test_fraction": 0.5},
    ):
        with pytest.raises(ValueError):
            prepare(corpus, tmp_path / "o", **kwargs)
    with pytest.raises(FileNotFoundError):
        prepare(tmp_path / "missing.jsonl", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_empty_input_is_an_error(tmp_path: Path) -> None:
    for content in ("", "\n\n  \n"):
        empty = tmp_path / "empty.jsonl"
        empty.write_text(content)
        with pytest.raises(DataValidationError, match=r"empty|no decision steps"):
            prepare(empty, tmp_path / "out")
        assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- validation


def trajectories_of(lines: list[str]) -> list[tuple[str, int, int, dict]]:
    """(id, first line index, last line index + 1, first record) per trajectory."""
    spans: list[tuple[str, int, int, dict]] = []
    for i, line in enumerate(lines):
        record = json.loads(line)
        tid = record["trajectory_id"]
        if spans and spans[-1][0] == tid:
            spans[-1] = (tid, spans[-1][1], i + 1, spans[-1][3])
        else:
            spans.append((tid, i, i + 1, record))
    return spans


def pick(lines: list[str], outcome: str, min_len: int = 4, nth: int = 1) -> tuple[int, int]:
    found = [
        (a, b)
        for _, a, b, r in trajectories_of(lines)
        if r["outcome"] == outcome and b - a >= min_len
    ]
    return found[nth]


def edit(lines: list[str], i: int, change: Callable[[dict], None]) -> None:
    record = json.loads(lines[i])
    change(record)
    lines[i] = json.dumps(record, separators=(",", ":"))


def corrupt_malformed(lines):
    a, _ = pick(lines, "agreement")
    cut = lines[a + 2].index('"history":[') + 15
    lines[a + 2] = lines[a + 2][:cut]  # a line cut short in the middle of the history
    return a + 3, "history", "malformed_json"


def corrupt_missing(lines):
    a, _ = pick(lines, "agreement")
    edit(lines, a + 1, lambda r: r.pop("rho_outcome"))
    return a + 2, "rho_outcome", "missing_field"


def corrupt_nan(lines):
    a, _ = pick(lines, "agreement")
    record = json.loads(lines[a + 2])
    lines[a + 2] = lines[a + 2].replace(
        f'"rho_outcome":{record["rho_outcome"]!r}', '"rho_outcome":NaN'
    )
    assert "NaN" in lines[a + 2]
    return a + 3, "rho_outcome", "non_finite"


def corrupt_rho_range(lines):
    a, b = pick(lines, "agreement")
    for i in range(a, b):
        edit(lines, i, lambda r: r.update(rho_outcome=1.5))
    return a + 1, "rho_outcome", "rho_range"


def corrupt_rho_not_constant(lines):
    a, _ = pick(lines, "agreement")
    edit(lines, a + 2, lambda r: r.update(rho_outcome=r["rho_outcome"] / 2))
    return a + 3, "rho_outcome", "rho_not_constant"


def corrupt_impasse_rho(lines):
    a, _ = pick(lines, "impasse")
    edit(lines, a + 1, lambda r: r.update(rho_outcome=0.5))
    return a + 2, "rho_outcome", "rho_range"


def corrupt_turn_order(lines):
    a, _ = pick(lines, "agreement")
    lines[a + 1], lines[a + 2] = lines[a + 2], lines[a + 1]
    return a + 2, "step", "turn_order"


def corrupt_appended_run(lines):
    n = len(lines)
    lines.extend(list(lines))
    return n + 1, "trajectory_id", "duplicate_trajectory"


def corrupt_non_contiguous(lines):
    spans = trajectories_of(lines)
    _, a, b, _ = spans[3]
    _, _, d, _ = spans[5]
    lines[d:d] = lines[a:b]  # trajectory 3 again, after trajectory 5
    return d + 1, "trajectory_id", "duplicate_trajectory"


def corrupt_type(lines):
    a, _ = pick(lines, "agreement")
    edit(lines, a + 1, lambda r: r.update(step="1"))
    return a + 2, "step", "bad_type"


def corrupt_history(lines):
    a, _ = pick(lines, "agreement")
    edit(lines, a + 3, lambda r: r["history"][0].update(price=r["history"][0]["price"] + 1))
    return a + 4, "history", "history"


def corrupt_price_range(lines):
    a, _ = pick(lines, "agreement")
    edit(lines, a + 1, lambda r: r.update(offer_price=5000.0))
    return a + 2, "offer_price", "price_range"


def corrupt_short_impasse(lines):
    _, b = pick(lines, "impasse")
    del lines[b - 1]
    return b - 1, "turn", "turn_order"


def corrupt_rho_mismatch(lines):
    a, b = pick(lines, "agreement")
    for i in range(a, b):
        edit(lines, i, lambda r: r.update(rho_outcome=round(1 - r["rho_outcome"], 3)))
    return b, "rho_outcome", "rho_mismatch"


def corrupt_schema_version(lines):
    a, _ = pick(lines, "agreement")
    edit(lines, a + 2, lambda r: r.update(schema_version=2))
    return a + 3, "schema_version", "schema_version"


def corrupt_bad_value(lines):
    a, _ = pick(lines, "agreement")
    edit(lines, a + 1, lambda r: r.update(role="pirate"))
    return a + 2, "role", "bad_value"


def corrupt_not_constant(lines):
    a, _ = pick(lines, "agreement")
    edit(lines, a + 2, lambda r: r.update(seller_strategy=r["seller_strategy"] + "_x"))
    return a + 3, "seller_strategy", "not_constant"


def corrupt_outcome(lines):
    _, b = pick(lines, "agreement")
    del lines[b - 1]  # the final ACCEPT is gone: an agreement that ends on an offer
    return b - 1, "outcome", "outcome"


def corrupt_structure_after_a_value_error(lines):
    # a bad value, then a line pyarrow cannot parse in the same trajectory: the value comes first
    a, _ = pick(lines, "agreement")
    edit(lines, a + 1, lambda r: r.update(action="WAIT"))
    edit(lines, a + 3, lambda r: r.update(step="3"))
    return a + 2, "action", "bad_value"


def corrupt_trajectory_error_before_a_malformed_line(lines):
    a, _ = pick(lines, "agreement", min_len=5)
    edit(lines, a + 1, lambda r: r.update(seed=r["seed"] + 1))
    lines[a + 3] = lines[a + 3][:40]
    return a + 2, "seed", "not_constant"


CORRUPTIONS = [
    corrupt_malformed,
    corrupt_missing,
    corrupt_nan,
    corrupt_rho_range,
    corrupt_rho_not_constant,
    corrupt_impasse_rho,
    corrupt_turn_order,
    corrupt_appended_run,
    corrupt_non_contiguous,
    corrupt_type,
    corrupt_history,
    corrupt_price_range,
    corrupt_short_impasse,
    corrupt_rho_mismatch,
    corrupt_schema_version,
    corrupt_bad_value,
    corrupt_not_constant,
    corrupt_outcome,
    corrupt_structure_after_a_value_error,
    corrupt_trajectory_error_before_a_malformed_line,
]


def test_every_documented_reason_has_a_corruption(corpus: Path) -> None:
    covered = {corrupt(corpus.read_text().splitlines())[2] for corrupt in CORRUPTIONS}
    assert covered == set(REASONS)


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__[8:])
@pytest.mark.parametrize("block_bytes", [1 << 16, 1 << 24], ids=["small-blocks", "one-block"])
def test_each_failure_names_file_line_and_field_and_writes_nothing(
    corpus: Path, tmp_path: Path, corrupt, block_bytes: int
) -> None:
    lines = corpus.read_text().splitlines()
    line, field, reason = corrupt(lines)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "prepared"
    with pytest.raises(DataValidationError) as info:
        prepare(bad, out, block_bytes=block_bytes)
    err = info.value
    message = str(err)
    assert message.startswith(f"{bad}:{line}: field '{field}': "), message
    assert "\n" not in message
    assert (err.line, err.field, err.reason) == (line, field, reason)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]  # nothing written
    # DatasetReader is documented to validate the same way (DATA.md section 2)
    with pytest.raises(DataValidationError) as read:
        list(DatasetReader(bad, block_bytes=block_bytes))
    assert (read.value.line, read.value.field, read.value.reason) == (line, field, reason)


def test_skip_invalid_counts_by_reason(corpus: Path, tmp_path: Path) -> None:
    lines = corpus.read_text().splitlines()
    spans = trajectories_of(lines)
    agreements = [s for s in spans if s[3]["outcome"] == "agreement" and s[2] - s[1] >= 4]
    (_, a1, b1, _), (_, a2, b2, _), (_, a3, b3, _) = agreements[2:5]
    lines[a1 + 1] = lines[a1 + 1][:90]  # malformed
    edit(lines, a2 + 2, lambda r: r.update(rho_outcome=float("nan")))  # json writes NaN
    edit(lines, a3 + 1, lambda r: r.update(rho_outcome=r["rho_outcome"] / 2))
    _, a4, b4, _ = spans[7]
    lines.extend(lines[a4:b4])  # a duplicate at the end: only the copy is skipped
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    expected = Counter(
        {"malformed_json": 1, "non_finite": 1, "rho_not_constant": 1, "duplicate_trajectory": 1}
    )
    skipped_lines = (b1 - a1) + (b2 - a2) + (b3 - a3) + (b4 - a4)
    for block_bytes in (1 << 16, 1 << 24):
        out = tmp_path / f"out-{block_bytes}"
        summary = prepare(bad, out, skip_invalid=True, block_bytes=block_bytes)
        assert summary.skipped == expected
        assert summary.skipped_lines == skipped_lines
        assert summary.total_rows == len(lines) - skipped_lines
        assert pq.read_table(out / DECISION_STEPS_FILE).num_rows == summary.total_rows
        meta = json.loads((out / META_FILE).read_text())
        assert meta["skipped_trajectories"] == dict(expected)
        assert "skipped 4 invalid trajectories" in str(summary)
    reader = DatasetReader(bad, skip_invalid=True)
    kept = list(reader)
    assert reader.skipped == expected and reader.skipped_lines == skipped_lines
    assert sum(len(t) for t in kept) == len(lines) - skipped_lines


def test_nothing_valid_left_is_an_error(corpus: Path, tmp_path: Path) -> None:
    lines = corpus.read_text().splitlines()[:40]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "\n".join(line.replace('"schema_version":1', '"schema_version":9') for line in lines) + "\n"
    )
    with pytest.raises(DataValidationError, match=r"no valid trajectory left.*schema_version"):
        prepare(bad, tmp_path / "out", skip_invalid=True)
    assert not (tmp_path / "out").exists()


def test_large_values_stay_exact(prepared: Path) -> None:
    table = pq.read_table(prepared / DECISION_STEPS_FILE, columns=["seed", "rho_train"])
    seeds = table.column("seed").to_numpy()
    assert seeds.dtype == np.int64 and (seeds > 2**40).any()


def test_bad_output_places(corpus: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        prepare(corpus, blocker)
    with pytest.raises(NotADirectoryError, match="not a directory"):
        prepare(corpus, blocker / "prepared")
    with pytest.raises(PermissionError, match="permission denied"):
        prepare(corpus, "/sys/janus-test-prepared")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    # missing parents are created
    deep = tmp_path / "a" / "b" / "prepared"
    prepare(corpus, deep)
    assert (deep / META_FILE).exists()


def test_full_disk_and_failures_leave_nothing(corpus: Path, tmp_path: Path, monkeypatch) -> None:
    import errno

    def full(self, table, row_group_size=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full)
    with pytest.raises(OSError, match="disk is full; nothing was written") as info:
        prepare(corpus, tmp_path / "new" / "deeper" / "prepared")
    assert info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # even the parent folders it made are gone


# ------------------------------------------------------------------- provenance, atomicity


def _with_provenance(corpus: Path, tmp_path: Path, every: int) -> tuple[Path, list[dict]]:
    """The corpus with ``source``/``round`` on every ``every``-th trajectory (after episode)."""
    records = read_records(corpus)
    spans = trajectories_of([json.dumps(r) for r in records])
    for n, (_, a, b, _) in enumerate(spans):
        if n % every == 0:
            for i in range(a, b):
                records[i].update(source="janus-refine", round=n % 3)
    path = tmp_path / "tagged.jsonl"
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
    return path, records


def test_provenance_columns_only_when_some_record_has_them(
    corpus: Path, prepared: Path, tmp_path: Path
) -> None:
    assert "source" not in pq.read_schema(prepared / DECISION_STEPS_FILE).names
    assert "round" not in pq.read_schema(prepared / TRAJECTORY_OUTCOMES_FILE).names
    tagged, records = _with_provenance(corpus, tmp_path, every=4)
    out = tmp_path / "p"
    prepare(tagged, out, k=4, val_fraction=0.2, test_fraction=0.2, block_bytes=1 << 16)
    steps = pq.read_table(out / DECISION_STEPS_FILE)
    outcomes = pq.read_table(out / TRAJECTORY_OUTCOMES_FILE)
    for table in (steps, outcomes):
        assert table.schema.names[-2:] == ["source", "round"]
        assert table.schema.field("source").type == pa.string()
        assert table.schema.field("round").type == pa.int32()
    assert steps.column("source").to_pylist() == [r.get("source") for r in records]
    assert steps.column("round").to_pylist() == [r.get("round") for r in records]
    firsts = [records[a] for _, a, _, _ in trajectories_of([json.dumps(r) for r in records])]
    assert outcomes.column("source").to_pylist() == [r.get("source") for r in firsts]
    assert outcomes.column("round").to_pylist() == [r.get("round") for r in firsts]
    # every other column is what the scripted data gives
    plain = pq.read_table(prepared / DECISION_STEPS_FILE)
    assert steps.drop_columns(["source", "round"]).equals(plain)


def test_provenance_first_seen_late_widens_the_groups_already_written(
    corpus: Path, tmp_path: Path
) -> None:
    records = read_records(corpus)
    spans = trajectories_of([json.dumps(r) for r in records])
    *_, (_, a, b, _) = spans  # only the last trajectory is tagged
    for i in range(a, b):
        records[i].update(source="janus-refine", round=1)
    late = tmp_path / "late.jsonl"
    late.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
    # the same records with the tagged trajectory first: provenance known at the first chunk
    first = [*records[a:b], *records[:a]]
    early = tmp_path / "early.jsonl"
    early.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in first))
    out_late, out_early = tmp_path / "late", tmp_path / "early"
    options = dict(k=4, val_fraction=0.2, test_fraction=0.2, block_bytes=1 << 14)
    prepare(late, out_late, **options)
    prepare(early, out_early, **options)
    for name in (DECISION_STEPS_FILE, TRAJECTORY_OUTCOMES_FILE):
        widened = pq.ParquetFile(out_late / name)
        assert widened.metadata.num_row_groups > 2  # rows were written before the widening
        table = widened.read()
        assert table.schema == pq.read_schema(out_early / name)
        source = table.column("source").to_pylist()
        tagged = [v for v in source if v is not None]
        assert tagged and set(tagged) == {"janus-refine"} and source[-len(tagged) :] == tagged
        assert set(table.column("round").to_pylist()[: -len(tagged)]) == {None}
        # the rows themselves are the ones the early file gives, in the late file's order
        reference = pq.read_table(out_early / name)
        n = len(tagged)
        assert table.slice(table.num_rows - n).equals(reference.slice(0, n))
        assert table.slice(0, table.num_rows - n).equals(reference.slice(n))


def test_a_provenance_key_that_no_record_carries_adds_no_column(
    corpus: Path, prepared: Path, tmp_path: Path
) -> None:
    records = read_records(corpus)
    records[0]["history_note"] = {"source": "not a record field"}  # an unknown, nested key
    path = tmp_path / "odd.jsonl"
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
    out = tmp_path / "p"
    prepare(path, out, k=4, val_fraction=0.2, test_fraction=0.2)
    for name in (DECISION_STEPS_FILE, TRAJECTORY_OUTCOMES_FILE):
        assert pq.read_table(out / name).equals(pq.read_table(prepared / name)), name


def test_same_input_gives_identical_bytes(corpus: Path, prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    prepare(corpus, out, k=4, val_fraction=0.2, test_fraction=0.2)
    for name in (DECISION_STEPS_FILE, TRAJECTORY_OUTCOMES_FILE):
        assert (out / name).read_bytes() == (prepared / name).read_bytes(), name


def test_a_failed_overwrite_leaves_the_previous_outputs(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare(corpus, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    lines = corpus.read_text().splitlines()
    edit(lines, len(lines) - 1, lambda r: r.update(step=-5))  # the very last line is bad
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataValidationError, match=f"{bad}:{len(lines)}: field 'step'"):
        prepare(bad, out, overwrite=True, block_bytes=1 << 16)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "out"]
