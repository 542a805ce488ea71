"""DatasetWriter and the JSONL schema: exact serialisation, provenance fields, atomic writes,
never appending."""

from __future__ import annotations

import dataclasses
import errno
import json
import random
from pathlib import Path

import pytest

import janus.dataset as dataset
from janus.dataset import (
    RECORD_FIELDS,
    REQUIRED_FIELDS,
    SCHEMA_VERSION,
    DatasetReader,
    DatasetWriter,
    DataValidationError,
    OutputError,
    iter_trajectories,
    serialize_trajectory,
    trajectory_records,
)
from janus.domain import Action, DomainConfig, Role, ZopaWidth, sample_scenario
from janus.episode import EpisodeResult, Match, run_episode
from janus.schema import PROVENANCE_FIELDS
from janus.strategies import create_strategy, training_pool

JSON_TYPES = {"int": (int,), "float": (float,), "str": (str,), "history": (list,)}


def play(index: int, pool: list[str] | None = None) -> tuple[EpisodeResult, str, str]:
    pool = pool or training_pool()
    rng = random.Random(index)
    buyer, seller = rng.choice(pool), rng.choice(pool)
    mover = Role.BUYER if index % 2 == 0 else Role.SELLER
    scenario = sample_scenario(DomainConfig(), rng, mover)
    match = Match(create_strategy(buyer, index), create_strategy(seller, index + 1), scenario)
    return run_episode(match), buyer, seller


class Stubborn:
    """Never accepts, offers its reservation: every episode with itself is an impasse."""

    strict = True

    def __init__(self, name: str) -> None:
        self.name = name

    def act(self, observation):
        return Action.offer(observation.reservation)


def impasse_episode() -> EpisodeResult:
    scenario = sample_scenario(
        DomainConfig(zopa_width=ZopaWidth.fixed(300)), random.Random(1), Role.SELLER
    )
    # the buyer offers 300 below the seller's floor and vice versa: nobody ever accepts
    match = Match(Stubborn("stub_b"), Stubborn("stub_s"), scenario)
    result = run_episode(match)
    assert not result.outcome.agreement
    return result


def write_episodes(path: Path, results, **kwargs) -> int:
    written = 0
    with DatasetWriter(path, **kwargs) as writer:
        for i, (result, buyer, seller) in enumerate(results):
            written += writer.write(
                result,
                trajectory_id=f"test-{i:04d}",
                buyer_strategy=buyer,
                seller_strategy=seller,
                seed=i,
                episode=i,
            )
    return written


# ------------------------------------------------------------------------------- the schema


def test_records_hold_every_field_with_its_type_and_are_canonical_json() -> None:
    for index in range(40):
        result, buyer, seller = play(index)
        text = serialize_trajectory(
            result,
            trajectory_id=f"t-{index}",
            buyer_strategy=buyer,
            seller_strategy=seller,
            seed=index,
            episode=index,
        )
        lines = text.splitlines()
        assert text.endswith("\n") and len(lines) == len(result.steps)
        offers: list[dict] = []
        for step, (line, decision) in enumerate(zip(lines, result.steps, strict=True)):
            record = json.loads(line)
            # compact JSON, fields in schema order; provenance omitted unless given
            assert json.dumps(record, separators=(",", ":")) == line
            assert list(record) == [
                f.name for f in RECORD_FIELDS if f.name not in PROVENANCE_FIELDS
            ]
            for spec in RECORD_FIELDS:
                if spec.name in PROVENANCE_FIELDS:
                    continue
                value = record[spec.name]
                if value is None:
                    assert spec.nullable, spec.name
                else:
                    assert isinstance(value, JSON_TYPES[spec.kind]), spec.name
                    assert not isinstance(value, bool)
            assert set(REQUIRED_FIELDS) <= set(record)
            obs = decision.observation
            assert record["schema_version"] == SCHEMA_VERSION
            assert record["step"] == step and record["turn"] == step + 1 == obs.turn
            assert record["role"] == obs.role.value
            assert record["reservation_price"] == obs.reservation
            assert record["reservation_norm"] == obs.reservation_norm
            assert record["turns_remaining"] == obs.turns_remaining
            assert record["history"] == offers
            assert record["history"] == [
                {"role": o.role.value, "price": o.price} for o in obs.history
            ]
            assert record["last_offer_price"] == (offers[-1]["price"] if offers else None)
            assert record["action"] == decision.action.kind.value
            assert record["offer_price"] == decision.action.price
            assert record["rho_outcome"] == result.outcome.rho
            agreed = result.outcome.agreement
            assert record["outcome"] == ("agreement" if agreed else "impasse")
            assert record["final_price"] == result.outcome.final_price
            assert record["buyer_strategy"] == buyer and record["seller_strategy"] == seller
            assert record["first_mover"] == result.scenario.first_mover.value
            if decision.action.price is not None:
                offers.append({"role": obs.role.value, "price": decision.action.price})


def test_writer_and_reader_round_trip(tmp_path: Path) -> None:
    results = [play(i) for i in range(60)]
    path = tmp_path / "episodes.jsonl"
    assert write_episodes(path, results, include_impasse=True) == 60
    trajectories = list(iter_trajectories(path))
    assert [t.trajectory_id for t in trajectories] == [f"test-{i:04d}" for i in range(60)]
    line = 1
    for trajectory, (result, _, _) in zip(trajectories, results, strict=True):
        assert trajectory.first_line == line
        line += len(result.steps)
        assert len(trajectory) == len(result.steps)
        assert trajectory.rho == result.outcome.rho
        assert trajectory.final_price == result.outcome.final_price
        actions = [(r["action"], r["offer_price"]) for r in trajectory.records]
        assert actions == [(s.action.kind.value, s.action.price) for s in result.steps]
    assert path.read_text().count("\n") == line - 1


def test_impasses_are_dropped_by_default_and_kept_with_rho_minus_one(tmp_path: Path) -> None:
    stuck = impasse_episode()
    results = [play(0), (stuck, "stub_b", "stub_s"), play(2)]
    assert write_episodes(tmp_path / "a.jsonl", results) == 2
    assert len(list(iter_trajectories(tmp_path / "a.jsonl"))) == 2
    assert write_episodes(tmp_path / "b.jsonl", results, include_impasse=True) == 3
    kept = list(iter_trajectories(tmp_path / "b.jsonl"))
    assert len(kept) == 3
    impasse = kept[1]
    assert not impasse.agreement and len(impasse) == stuck.scenario.max_turns
    assert all(r["rho_outcome"] == -1.0 and r["final_price"] is None for r in impasse.records)
    assert all(r["outcome"] == "impasse" for r in impasse.records)


def test_invalid_steps_and_non_finite_numbers_are_refused() -> None:
    result, buyer, seller = play(3)
    bad_step = result.steps[0].__class__(
        turn=1,
        role=result.steps[0].role,
        observation=result.steps[0].observation,
        action=result.steps[0].action,
        valid=False,
        error="nope",
    )
    broken = EpisodeResult(
        result.scenario,
        buyer,
        seller,
        (bad_step, *result.steps[1:]),
        result.offers,
        result.outcome,
    )
    with pytest.raises(ValueError, match="invalid action"):
        serialize_trajectory(
            broken, trajectory_id="x", buyer_strategy=buyer, seller_strategy=seller, seed=0
        )
    agreed = next(r for r in (play(i)[0] for i in range(20)) if r.outcome.agreement)
    nan_price = dataclasses.replace(
        agreed, outcome=dataclasses.replace(agreed.outcome, final_price=float("nan"))
    )
    with pytest.raises(ValueError, match="non-finite"):
        serialize_trajectory(
            nan_price, trajectory_id="x", buyer_strategy=buyer, seller_strategy=seller, seed=0
        )


def test_the_writer_is_json_dumps_of_the_records() -> None:
    # the writer encodes shared parts once; the result must be json.dumps of each record
    for index in range(30):
        result, buyer, seller = play(index)
        kwargs = dict(trajectory_id=f"e-{index}", buyer_strategy=buyer, seller_strategy=seller)
        tags = {"source": "janus-refine", "round": 1} if index % 3 == 0 else {}
        text = serialize_trajectory(result, seed=index, episode=index, **kwargs, **tags)
        records = trajectory_records(result, seed=index, episode=index, **kwargs, **tags)
        expected = [json.dumps(r, separators=(",", ":")) for r in records]
        assert text.splitlines() == expected


# ---------------------------------------------------------------------- provenance fields


def test_provenance_fields_follow_episode_and_round_trip(tmp_path: Path) -> None:
    result, buyer, seller = play(7)
    kwargs = dict(trajectory_id="r-1", buyer_strategy=buyer, seller_strategy=seller, seed=3)
    plain = serialize_trajectory(result, episode=4, **kwargs)
    tagged = serialize_trajectory(result, episode=4, source="janus-refine", round=2, **kwargs)
    for plain_line, line in zip(plain.splitlines(), tagged.splitlines(), strict=True):
        record = json.loads(line)
        assert list(record)[-3:] == ["episode", "source", "round"]
        assert (record["source"], record["round"]) == ("janus-refine", 2)
        # the rest of the line is byte for byte the scripted one
        assert line == plain_line[:-1] + ',"source":"janus-refine","round":2}'
    only_round = serialize_trajectory(result, round=0, **kwargs).splitlines()[0]
    assert only_round.endswith(',"seed":3,"round":0}')
    path = tmp_path / "refined.jsonl"
    with DatasetWriter(path, include_impasse=True) as writer:
        writer.write(result, source="janus-refine", round=2, **kwargs)
    (trajectory,) = iter_trajectories(path)
    assert {(r["source"], r["round"]) for r in trajectory.records} == {("janus-refine", 2)}


@pytest.mark.parametrize(
    ("source", "round_"),
    [("", None), (7, None), (None, -1), (None, True), (None, 1.0), (None, 2**31)],
)
def test_bad_provenance_values_are_refused_by_the_writer(source, round_) -> None:
    result, buyer, seller = play(8)
    with pytest.raises(ValueError, match=r"source|round"):
        serialize_trajectory(
            result,
            trajectory_id="x",
            buyer_strategy=buyer,
            seller_strategy=seller,
            seed=0,
            source=source,
            round=round_,
        )


def _tagged_lines(**tags) -> list[str]:
    result, buyer, seller = play(9)
    text = serialize_trajectory(
        result, trajectory_id="p-1", buyer_strategy=buyer, seller_strategy=seller, seed=1, **tags
    )
    return text.splitlines()


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (lambda r: r.update(source=""), "source", "bad_value"),
        (lambda r: r.update(source=3), "source", "bad_type"),
        (lambda r: r.update(round=-2), "round", "bad_value"),
        (lambda r: r.update(round="1"), "round", "bad_type"),
        (lambda r: r.update(source="other"), "source", "not_constant"),
        (lambda r: r.update(round=5), "round", "not_constant"),
        (lambda r: r.pop("round"), "round", "not_constant"),
    ],
)
def test_bad_provenance_in_a_file_names_line_and_field(tmp_path: Path, change, field, reason):
    lines = _tagged_lines(source="janus-refine", round=1)
    record = json.loads(lines[1])
    change(record)
    lines[1] = json.dumps(record, separators=(",", ":"))
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataValidationError) as info:
        list(DatasetReader(path))
    assert (info.value.line, info.value.field, info.value.reason) == (2, field, reason)
    assert str(info.value).startswith(f"{path}:2: field '{field}': ")


# --------------------------------------------------------------------------- output safety


def test_existing_file_is_never_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "episodes.jsonl"
    path.write_text("precious\n")
    with pytest.raises(FileExistsError, match=r"already exists.*--overwrite"):
        DatasetWriter(path)
    assert path.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episodes.jsonl"]


def test_overwrite_replaces_only_when_the_new_file_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "episodes.jsonl"
    path.write_text("old\n")
    result, buyer, seller = play(5)
    with DatasetWriter(path, overwrite=True) as writer:
        writer.write(
            result, trajectory_id="a", buyer_strategy=buyer, seller_strategy=seller, seed=1
        )
        assert path.read_text() == "old\n"  # still the old file while writing
        assert writer.temp_path.parent == tmp_path and writer.temp_path.exists()
    assert path.read_text().count("\n") == len(result.steps)
    # an error while overwriting leaves the previous file as it was
    before = path.read_bytes()
    with pytest.raises(RuntimeError), DatasetWriter(path, overwrite=True) as writer:
        writer.write(
            result, trajectory_id="b", buyer_strategy=buyer, seller_strategy=seller, seed=2
        )
        raise RuntimeError("crash")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episodes.jsonl"]


def test_crash_leaves_no_file_at_all(tmp_path: Path) -> None:
    path = tmp_path / "out" / "episodes.jsonl"
    result, buyer, seller = play(6)
    with pytest.raises(KeyboardInterrupt), DatasetWriter(path) as writer:
        writer.write(
            result, trajectory_id="a", buyer_strategy=buyer, seller_strategy=seller, seed=1
        )
        raise KeyboardInterrupt
    assert list(path.parent.iterdir()) == []


def test_a_file_created_meanwhile_is_not_clobbered(tmp_path: Path) -> None:
    path = tmp_path / "episodes.jsonl"
    writer = DatasetWriter(path)
    path.write_text("someone else\n")
    with pytest.raises(FileExistsError, match="appeared while"):
        writer.close()
    assert path.read_text() == "someone else\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episodes.jsonl"]


def test_bad_output_paths_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="is a directory"):
        DatasetWriter(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        DatasetWriter(blocker / "sub" / "episodes.jsonl")
    # missing parents are created
    deep = tmp_path / "a" / "b" / "episodes.jsonl"
    DatasetWriter(deep).close()
    assert deep.exists() and deep.read_text() == ""


def test_unwritable_location_is_a_permission_error() -> None:
    # /sys refuses new entries even to root
    with pytest.raises(PermissionError, match="permission denied"):
        DatasetWriter("/sys/janus-test-dir/episodes.jsonl")
    with pytest.raises(PermissionError, match="permission denied"):
        DatasetWriter("/sys/janus-test-episodes.jsonl")


def test_full_disk_leaves_no_partial_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "episodes.jsonl"
    calls = {"n": 0}
    real = dataset._write_all

    def disk_fills_up(fd: int, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            real(fd, data[: len(data) // 2])  # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data)

    monkeypatch.setattr(dataset, "_write_all", disk_fills_up)
    results = [play(i) for i in range(5)]
    with pytest.raises(OutputError, match="disk is full; nothing was written") as info:
        write_episodes(path, results)
    assert info.value.errno == errno.ENOSPC
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []
