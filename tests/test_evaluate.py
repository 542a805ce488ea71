"""The evaluation harness: statistics against hand-computed values, paired and balanced
episodes, calibration on agents of known behaviour, batching, reports written atomically,
and an end-to-end run with a real (tiny, random) JanusAgent."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import random
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from janus.domain import Action, DomainConfig, Observation, Role, ZopaWidth
from janus.evaluation import (
    SWEEP,
    EvaluationConfig,
    bootstrap_ci,
    calibration_stats,
    evaluate,
    headline_table,
    linear_fit,
    load_summary,
    make_plan,
    mean_ci,
    monotonicity_violations,
    plan_episodes,
    rankdata,
    spearman,
)
from janus.evaluation.summary_types import RhoPair

# ---------------------------------------------------------------------- fake agents


class FakeStats:
    def __init__(self) -> None:
        self.decisions = 0
        self.safety_clamped_offers = 0
        self.safety_refused_accepts = 0


class FakeSeat:
    strict = False

    def __init__(self, policy, rho, channels="both", fixed_rho=0.5, name=None) -> None:
        self.batch_policy = policy
        self.rho = rho
        self.channels = channels
        self.fixed_rho = fixed_rho
        self.name = name or f"fake({rho})"
        self.stats = FakeStats()

    def act(self, observation: Observation) -> Action:
        return self.batch_policy.act_batch([self], [observation])[0]


class FakeAgent:
    """A noisy time-dependent agent aiming at ρ, knowing only what its side may know.

    It guesses the ZOPA width (``guess``) and so the opponent's reservation, aims at the price
    ``ρ`` of the way through the guessed ZOPA, concedes toward it from a far anchor, and
    accepts a standing offer at least as good as its aim. Its noise is a pure function of
    the observation, so paired episodes at the same effective ρ are identical. It listens to
    the *weights* channel only: a ``text`` seat aims at ``fixed_rho`` whatever its ρ.

    ``oracle``: never accepts and offers its aim at every turn (with ``guess`` the true width
    and a fixed BuyerMax, every agreement then lands exactly on ρ). ``open_with_accept``:
    answers ACCEPT when there is no standing offer (an invalid action).
    """

    label = "fake"

    def __init__(
        self,
        guess: float = 450.0,
        noise: float = 0.03,
        *,
        oracle: bool = False,
        ignore_rho: bool = False,
        open_with_accept: bool = False,
    ) -> None:
        self.guess = guess
        self.noise = noise
        self.oracle = oracle
        self.ignore_rho = ignore_rho
        self.open_with_accept = open_with_accept
        self.batches: list[list[str]] = []  # seat names per act_batch call

    def seat(
        self, rho, *, channels="both", fixed_rho=0.5, name=None, calibrated=True, role=None
    ) -> FakeSeat:
        return FakeSeat(self, rho, channels, fixed_rho, name)

    def _rho(self, seat: FakeSeat) -> float:
        if self.ignore_rho:
            return 0.5
        return seat.rho if seat.channels in ("both", "weights") else seat.fixed_rho

    def _decide(self, seat: FakeSeat, obs: Observation) -> Action:
        seat.stats.decisions += 1
        rho = self._rho(seat)
        r, w = obs.reservation, self.guess
        sign = 1.0 if obs.role is Role.BUYER else -1.0  # buyer wants low prices
        aim = r - (1.0 - rho) * w if sign > 0 else r + rho * w
        if self.open_with_accept and obs.standing_offer is None:
            return Action.accept()
        if self.oracle:
            return Action.offer(aim)
        o = obs.standing_offer
        if o is not None and sign * (o - aim) <= 0 and obs.is_acceptable(o):
            return Action.accept()
        key = f"{obs.reservation:.6f}:{obs.turn}:{rho:.2f}"
        rng = random.Random(int(hashlib.sha256(key.encode()).hexdigest()[:12], 16))
        anchor = aim - sign * 0.6 * w
        price = anchor + (aim - anchor) * (obs.turn / obs.max_turns) ** 0.7
        price += rng.uniform(-self.noise, self.noise) * w
        if not obs.is_acceptable(price):
            price = r
            seat.stats.safety_clamped_offers += 1
        return Action.offer(obs.price_range.clip(price))

    def act_batch(self, seats, observations) -> list[Action]:
        self.batches.append([s.name for s in seats])
        return [self._decide(s, o) for s, o in zip(seats, observations, strict=True)]


OPPONENTS = ["boulware", "fair", "conceder_fast", "micro_coarse"]  # last two held out


def small_config(tmp_path: Path, name: str = "report", **overrides) -> EvaluationConfig:
    values = dict(
        out=tmp_path / name,
        opponents=OPPONENTS,
        episodes_per_cell=2,
        seed=7,
        bootstrap_resamples=200,
        plots=False,
        progress=False,
    )
    values.update(overrides)
    return EvaluationConfig(**values)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory):
    """One full evaluation with fake agents: 5 configurations, sweep + ablations, baselines."""
    tmp = tmp_path_factory.mktemp("fake")
    agent, base = FakeAgent(), FakeAgent(ignore_rho=True)
    result = evaluate(small_config(tmp, plots=True), agent=agent, base_agent=base)
    return result, agent


# ---------------------------------------------------------------------- statistics


def test_rankdata_averages_ties() -> None:
    assert rankdata([10, 20, 20, 30]).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert rankdata([3, 1, 2]).tolist() == [3.0, 1.0, 2.0]
    assert rankdata([5, 5, 5]).tolist() == [2.0, 2.0, 2.0]


def test_spearman_with_ties_matches_a_hand_computation() -> None:
    # y ranks [1, 2.5, 2.5, 4, 5]: Σdxdy = 9.5, Σdx² = 10, Σdy² = 9.5 → r = sqrt(0.95)
    assert spearman([1, 2, 3, 4, 5], [1, 2, 2, 3, 5]) == pytest.approx(math.sqrt(0.95))
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)  # monotone, not linear
    assert math.isnan(spearman([1, 2, 3], [7, 7, 7]))  # constant: undefined
    assert math.isnan(spearman([1], [2]))
    assert spearman([1, 2, float("nan"), 3], [1, 2, 0, 3]) == pytest.approx(1.0)  # nan dropped


def test_linear_fit_on_a_perfect_line_and_degenerate_input() -> None:
    x = np.linspace(0, 1, 11)
    slope, intercept = linear_fit(x, 2 * x + 1)
    assert slope == pytest.approx(2.0) and intercept == pytest.approx(1.0)
    slope, intercept = linear_fit([0, 0, 1, 1], [0.1, 0.3, 0.7, 0.9])
    assert slope == pytest.approx(0.6) and intercept == pytest.approx(0.2)
    assert all(math.isnan(v) for v in linear_fit([0.5, 0.5], [0.1, 0.9]))


def test_monotonicity_violations_count_strict_downs_between_defined_points() -> None:
    assert monotonicity_violations([0.1, 0.3, 0.2, 0.4, 0.35]) == 2
    assert monotonicity_violations([0.1, 0.2, 0.2, 0.3]) == 0  # flat is not a violation
    assert monotonicity_violations([0.1, float("nan"), 0.05, 0.5]) == 1  # gap skipped
    assert monotonicity_violations([]) == 0


def test_bootstrap_ci_is_seeded_and_covers_the_mean() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(3.0, 1.0, size=200)
    a = bootstrap_ci(values, seed=5)
    assert a == bootstrap_ci(values, seed=5)
    assert a != bootstrap_ci(values, seed=6)
    assert a[0] < values.mean() < a[1]
    # the interval of a mean of 200 N(·, 1) draws is about ±1.96/sqrt(200) wide
    assert a[1] - a[0] == pytest.approx(2 * 1.96 / math.sqrt(200), rel=0.25)
    mean, low, high = mean_ci(values, seed=5)
    assert (low, high) == a and mean == pytest.approx(values.mean())
    # {0, 1}: the resampled mean is 0, 0.5 or 1 with probability 1/4, 1/2, 1/4 → [0, 1]
    assert bootstrap_ci([0.0, 1.0], seed=0, n_resamples=2000) == (0.0, 1.0)
    assert bootstrap_ci([4.0], seed=0) == (4.0, 4.0)
    assert all(math.isnan(v) for v in bootstrap_ci([], seed=0))
    median = bootstrap_ci([1, 2, 3, 100], lambda s: np.median(s, axis=1), seed=0)
    assert median[0] >= 1 and median[1] <= 100


def test_calibration_stats_match_a_hand_computation() -> None:
    nan = float("nan")
    requested = [0, 0, 0.5, 0.5, 1, 1]
    achieved = [0.1, 0.3, 0.5, nan, 0.7, 0.9]
    agreed = [True, True, True, False, True, True]
    s = calibration_stats(requested, achieved, agreed, [0, 0.5, 1], n_resamples=500, seed=3)
    means = [p["mean_achieved"] for p in s["curve"]]
    assert means == pytest.approx([0.2, 0.5, 0.8])
    assert [p["agreement_rate"] for p in s["curve"]] == [1.0, 0.5, 1.0]
    assert s["mae"] == pytest.approx((0.2 + 0.0 + 0.2) / 3)
    assert s["per_episode_mae"] == pytest.approx((0.1 + 0.3 + 0.0 + 0.3 + 0.1) / 5)
    assert s["spearman"] == pytest.approx(1.0)
    assert s["slope"] == pytest.approx(0.6) and s["intercept"] == pytest.approx(0.2)
    assert s["monotonicity_violations"] == 0
    assert s["agreement_rate"] == pytest.approx(5 / 6)
    first = s["curve"][0]
    assert first["ci_low"] <= 0.2 <= first["ci_high"]
    assert s["mae_ci"][0] <= s["mae"] <= s["mae_ci"][1]
    assert s == calibration_stats(requested, achieved, agreed, [0, 0.5, 1], n_resamples=500, seed=3)
    with pytest.raises(ValueError, match="not on the grid"):
        calibration_stats([0.3], [0.3], [True], [0, 0.5, 1])


def test_calibration_stats_on_a_perfect_dial() -> None:
    grid = [round(i / 10, 1) for i in range(11)]
    requested = [g for g in grid for _ in range(3)]
    s = calibration_stats(requested, requested, [True] * len(requested), grid, seed=0)
    assert s["mae"] == pytest.approx(0.0, abs=1e-12)
    assert s["slope"] == pytest.approx(1.0) and s["intercept"] == pytest.approx(0.0, abs=1e-12)
    assert s["spearman"] == pytest.approx(1.0)
    assert s["monotonicity_violations"] == 0


# -------------------------------------------------------------------------- planning


def test_plan_is_paired_balanced_and_covers_every_cell() -> None:
    plan = make_plan(EvaluationConfig(opponents=OPPONENTS, episodes_per_cell=4, seed=1))
    assert plan.held_out_opponents == ("conceder_fast", "micro_coarse")
    assert plan.baselines == ("boulware", "fair")  # scripted baselines: the in-pool opponents
    specs = plan_episodes(plan)
    counts = Counter(s.configuration for s in specs)
    cell = len(OPPONENTS) * 2 * 4
    assert counts["standard"] == counts["base"] == counts["script:fair"] == cell
    assert counts[SWEEP] == 3 * 11 * cell  # 3 channels × 11 ρ*
    scenario = {}
    for s in specs:  # one scenario and seed per (opponent, role, index), whatever the config
        key = (s.opponent, s.janus_role, s.index)
        assert scenario.setdefault(key, (s.seed, s.scenario)) == (s.seed, s.scenario)
    movers = Counter(
        (s.configuration, s.channels, s.requested_rho, s.janus_role, s.scenario.first_mover)
        for s in specs
    )
    assert set(movers.values()) == {len(OPPONENTS) * 2}  # role and first mover balanced


def test_one_episode_per_cell_still_balances_the_first_mover() -> None:
    plan = make_plan(EvaluationConfig(opponents=OPPONENTS, episodes_per_cell=1, ablations=False))
    specs = [s for s in plan_episodes(plan) if s.configuration == "standard"]
    assert Counter(s.scenario.first_mover for s in specs) == {Role.BUYER: 4, Role.SELLER: 4}
    janus_opens = Counter(s.opponent for s in specs if s.scenario.first_mover is s.janus_role)
    assert janus_opens == dict.fromkeys(OPPONENTS, 1)  # per opponent: once in its two roles


def test_default_opponents_include_the_held_out_set() -> None:
    from janus.strategies import evaluation_pool, held_out_pool

    plan = make_plan(EvaluationConfig())
    assert set(held_out_pool()) <= set(plan.opponents)
    assert set(plan.opponents) == set(evaluation_pool()) | set(held_out_pool())
    assert plan.channels == ("both", "text", "weights")


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="positive integer"):
        make_plan(EvaluationConfig(episodes_per_cell=0))
    with pytest.raises(ValueError, match="unknown opponent"):
        make_plan(EvaluationConfig(opponents=["nobody"]))
    with pytest.raises(ValueError, match="unknown configuration"):
        make_plan(EvaluationConfig(configurations=["standard", "wild"]))
    with pytest.raises(ValueError, match="2 decimals"):
        make_plan(EvaluationConfig(rho_grid=[0.0, 0.125, 1.0]))
    with pytest.raises(ValueError, match="unknown domain 'moon'; choose from default, overlap"):
        make_plan(EvaluationConfig(domain="moon"))


def test_the_overlap_domain_gives_buyers_and_sellers_the_same_reservations() -> None:
    """On ``--domain overlap`` a reservation value is often either side's; by default, rarely."""

    def overlap_share(domain: str) -> float:
        plan = make_plan(EvaluationConfig(opponents=OPPONENTS, episodes_per_cell=8, domain=domain))
        specs = plan_episodes(plan)
        buyers = sorted(s.scenario.buyer_max for s in specs)
        sellers = [s.scenario.seller_min for s in specs]
        # A seller's reservation inside the central 90% of the buyers' reservations.
        low, high = buyers[len(buyers) // 20], buyers[-len(buyers) // 20]
        return sum(low <= r <= high for r in sellers) / len(sellers)

    assert make_plan(EvaluationConfig(domain="overlap")).domain.buyer_max_std == 150.0
    assert overlap_share("overlap") > 0.4
    assert overlap_share("default") < 0.1


# ------------------------------------------------------------------- the harness


def test_report_files_and_summary_layout(fake_run) -> None:
    result, _ = fake_run
    out = result.out_dir
    assert sorted(p.name for p in out.iterdir()) == [
        "calibration.png",
        "concession.png",
        "episodes.csv",
        "report.md",
        "summary.json",
        "utility.png",
    ]
    assert not list(out.parent.glob(".*tmp-*"))
    for png in result.plots.values():
        assert png.read_bytes()[:4] == b"\x89PNG"
    written = json.loads(result.summary_json.read_text())
    assert written == result.summary.to_json()
    for key in ("mae", "spearman", "slope", "intercept", "per_episode_mae"):
        assert key in written["calibration"]
    summary = load_summary(result.out_dir)
    assert summary == result.summary
    assert summary.headline_set == "held_out"
    assert summary.calibration.opponents == ("conceder_fast", "micro_coarse")
    assert summary.calibration_in_pool.opponents == ("boulware", "fair")
    assert summary.calibration == summary.ablations["both"].held_out
    assert set(summary.ablations) == {"both", "text", "weights"}
    assert list(summary.configurations) == [
        "base",
        "standard",
        "extreme",
        "flipped",
        "neutral",
        "script:boulware",
        "script:fair",
    ]
    standard = summary.configurations["standard"]
    assert standard.rho == RhoPair(buyer=0.2, seller=0.8)
    overall = standard.all
    assert overall.episodes == len(OPPONENTS) * 2 * 2
    assert 0.0 <= overall.agreement_rate <= 1.0
    assert overall.utility in overall.utility_ci
    assert overall.win_rate + overall.tie_rate + overall.loss_rate == pytest.approx(1)
    assert set(standard.by_opponent) == set(OPPONENTS)  # one opponent set for every row
    assert {c.all.episodes for c in summary.configurations.values()} == {16}
    assert standard.vs_base.pairs == 16
    assert isinstance(summary.invalid_actions, int)
    assert summary.agreements_outside_zopa == 0
    table = headline_table(summary)
    assert "MAE over the grid" in table and "script:fair" in table and "held-out" in table
    report = result.report_md.read_text()
    assert "![calibration](calibration.png)" in report and "## Channel ablations" in report
    assert "; price decoding greedy; temperature 0" in report  # how it was played
    assert summary.run.context.price_decoding == "greedy"


def test_episodes_csv_rows_and_recomputed_calibration(fake_run) -> None:
    result, _ = fake_run
    rows = read_csv(result.episodes_csv)
    assert len(rows) == result.summary.run.episodes == 16 * 7 + 3 * 11 * 16
    row = rows[0]
    for column in ("buyer_max", "seller_min", "first_mover", "seed", "offers", "achieved_rho"):
        assert column in row
    trace = json.loads(row["offers"])
    assert all(role in ("buyer", "seller") for role, _, _ in trace)
    # The headline curve is the plain mean of achieved ρ over agreed held-out sweep episodes.
    by_rho = defaultdict(list)
    for r in rows:
        headline = r["channels"] == "both" and r["held_out"] == "1"
        if r["configuration"] == SWEEP and headline and r["outcome"] == "agreement":
            by_rho[float(r["requested_rho"])].append(float(r["achieved_rho"]))
    curve = result.summary.calibration.curve
    for point in curve:
        values = by_rho.get(point.rho, [])
        assert point.agreements == len(values)
        if values:
            assert point.mean_achieved == pytest.approx(np.mean(values))
    # Paired: the same (opponent, role, index) has the same seed and reservations everywhere.
    cells = defaultdict(set)
    for r in rows:
        key = (r["opponent"], r["janus_role"], r["episode_index"])
        cells[key].add((r["seed"], r["buyer_max"], r["seller_min"], r["first_mover"]))
    assert all(len(v) == 1 for v in cells.values())


def test_the_opponent_behaves_identically_across_configurations(fake_run) -> None:
    # When the opponent opens, its first offer depends only on the scenario and its seed.
    result, _ = fake_run
    openings = defaultdict(set)
    for r in read_csv(result.episodes_csv):
        opponent_role = "seller" if r["janus_role"] == "buyer" else "buyer"
        if r["first_mover"] == opponent_role:
            first = json.loads(r["offers"])[0]
            openings[(r["opponent"], r["janus_role"], r["episode_index"])].add(first[1])
    assert openings and all(len(v) == 1 for v in openings.values())


def test_calibration_and_ablations_reflect_the_fake_agents_known_behaviour(fake_run) -> None:
    summary = fake_run[0].summary
    both = summary.ablations["both"].all
    assert both.slope > 0.3 and both.spearman > 0.8
    # The fake listens to the weights only: weights-only equals both, text-only is flat.
    weights = summary.ablations["weights"].all
    assert [p.mean_achieved for p in weights.curve] == [p.mean_achieved for p in both.curve]
    text = summary.ablations["text"].all
    means = [p.mean_achieved for p in text.curve]
    assert max(means) - min(means) < 1e-12
    assert text.slope == pytest.approx(0.0, abs=1e-9)
    assert text.spearman is None  # constant curve: undefined, written as null
    assert text.monotonicity_violations == 0
    # Extreme asks for more than flipped in both roles: it must earn more utility.
    configurations = summary.configurations
    assert configurations["extreme"].all.utility > configurations["flipped"].all.utility
    buyer_curve = summary.concession.buyer
    assert set(buyer_curve) == {f"{g / 10:.2f}" for g in range(11)}


def test_decisions_of_all_configurations_are_batched_together(fake_run) -> None:
    _, agent = fake_run
    # One act_batch per round of the single chunk: at most max_turns calls.
    assert len(agent.batches) <= 20
    first = agent.batches[0]
    assert any(":text:" in n for n in first) and any(":weights:" in n for n in first)
    assert any("standard" in n for n in first) and any("sweep" in n for n in first)


def test_exact_calibration_with_an_oracle_that_knows_the_zopa(tmp_path: Path) -> None:
    # BuyerMax = 900 and W = 500 always, and the fake knows it: every agreement is at ρ*.
    domain = DomainConfig(buyer_max_std=0.0, zopa_width=ZopaWidth.fixed(500))
    config = small_config(
        tmp_path,
        domain=domain,
        configurations=["standard"],
        ablations=False,
        scripted_baselines=False,
    )
    result = evaluate(config, agent=FakeAgent(guess=500.0, oracle=True))
    calibration = result.summary.calibration_all
    assert calibration.agreements > 0
    assert calibration.grid_points_used == 11
    assert calibration.mae == pytest.approx(0.0, abs=1e-9)
    assert calibration.per_episode_mae == pytest.approx(0.0, abs=1e-9)
    assert calibration.slope == pytest.approx(1.0)
    assert calibration.intercept == pytest.approx(0.0, abs=1e-9)
    assert calibration.spearman == pytest.approx(1.0)
    assert calibration.monotonicity_violations == 0


def test_invalid_actions_and_safety_counts_are_recorded(tmp_path: Path) -> None:
    config = small_config(tmp_path, configurations=["neutral"], calibration=False)
    config.scripted_baselines = False
    result = evaluate(config, agent=FakeAgent(open_with_accept=True))
    rows = read_csv(result.episodes_csv)
    opened = sum(r["first_mover"] == r["janus_role"] for r in rows)
    assert opened == len(rows) // 2  # first mover balanced
    assert result.summary.invalid_actions == opened
    assert result.summary.configurations["neutral"].all.invalid_actions == opened
    assert sum(int(r["invalid_actions"]) for r in rows) == opened
    clamped = sum(int(r["safety_clamped_offers"]) for r in rows)
    assert result.summary.safety.clamped_offers == clamped


def test_same_seed_same_report_and_another_seed_differs(tmp_path: Path) -> None:
    kwargs = dict(configurations=["standard", "flipped"], ablations=False)
    kwargs["scripted_baselines"] = False
    a = evaluate(small_config(tmp_path, "a", **kwargs), agent=FakeAgent())
    b = evaluate(small_config(tmp_path, "b", **kwargs), agent=FakeAgent())
    c = evaluate(small_config(tmp_path, "c", seed=8, **kwargs), agent=FakeAgent())
    assert replace(a.summary, timing=None) == replace(b.summary, timing=None)
    assert replace(a.summary, timing=None) != replace(c.summary, timing=None)
    assert a.episodes_csv.read_bytes() == b.episodes_csv.read_bytes()
    assert a.episodes_csv.read_bytes() != c.episodes_csv.read_bytes()


def test_reports_are_written_atomically(tmp_path: Path, monkeypatch) -> None:
    import janus.evaluation.runner as runner

    kwargs = dict(configurations=["neutral"], calibration=False, scripted_baselines=False)

    def broken(summary, path):
        raise OSError("disk full")

    monkeypatch.setattr(runner, "write_summary_json", broken)
    with pytest.raises(OSError, match="disk full"):
        evaluate(small_config(tmp_path, **kwargs), agent=FakeAgent())
    assert list(tmp_path.iterdir()) == []  # no report, no temp dir left behind
    monkeypatch.undo()

    first = evaluate(small_config(tmp_path, **kwargs), agent=FakeAgent())
    agent = FakeAgent()
    with pytest.raises(FileExistsError, match="overwrite"):
        evaluate(small_config(tmp_path, **kwargs), agent=agent)
    assert agent.batches == []  # refused before playing anything
    again = evaluate(small_config(tmp_path, overwrite=True, **kwargs), agent=FakeAgent())
    assert again.out_dir == first.out_dir and again.summary_json.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_held_out_opponents_seen_in_training_are_flagged(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "prepared"
    data.mkdir()
    table = pa.table({"buyer_strategy": ["boulware", "fair"], "seller_strategy": ["fair", None]})
    pq.write_table(table, data / "trajectory_outcomes.parquet")
    adapter = tmp_path / "run" / "adapter"
    adapter.mkdir(parents=True)
    config = {
        "format": "janus-hyperlora",
        "format_version": 1,
        "target_modules": ["q_proj"],
        "adapted_modules": [],
        "base_fingerprint": {},
        "train_config": {"data": str(data)},
    }
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    kwargs = dict(configurations=["neutral"], calibration=False, scripted_baselines=False)
    clean = evaluate(small_config(tmp_path, "a", run=tmp_path / "run", **kwargs), agent=FakeAgent())
    check = clean.summary.run.context.held_out_check
    assert check.checked and check.seen_in_training == ()

    pq.write_table(pa.table({"buyer_strategy": ["micro_coarse"], "seller_strategy": ["fair"]}),
                   data / "trajectory_outcomes.parquet")  # fmt: skip
    with pytest.warns(UserWarning, match="micro_coarse"):
        leaky = evaluate(
            small_config(tmp_path, "b", run=tmp_path / "run", **kwargs), agent=FakeAgent()
        )
    assert leaky.summary.run.context.held_out_check.seen_in_training == ("micro_coarse",)
    assert "held-out check failed" in leaky.report_md.read_text()


# -------------------------------------------------------------- a real JanusAgent


def _tiny_run(directory: Path) -> Path:
    """A random janus-tiny base and an adapter on it (random B, so that ρ matters), saved as
    a run: the way ``janus train`` leaves them."""
    import torch

    from janus.checkpoint import resize_for_tokenizer, save_hyperlora_adapter
    from janus.examples import add_special_tokens
    from janus.hyperlora import inject_hyperlora, iter_hyperlora_layers
    from janus.prompt import DEFAULT_K, PROMPT_FORMAT_VERSION, SPECIAL_TOKENS
    from janus.tiny import build_model, build_tokenizer

    tokenizer = build_tokenizer()
    model = build_model("tiny", tokenizer, seed=0)
    base_dir = directory / "janus-tiny"
    model.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    token_ids = add_special_tokens(tokenizer)
    resize_for_tokenizer(model, tokenizer)
    torch.manual_seed(0)
    inject_hyperlora(model, rank=4, alpha=8, hyper_hidden=8, trainable_token_ids=token_ids)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, layer in iter_hyperlora_layers(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator) * 0.5)
    extra = {
        "special_tokens": list(SPECIAL_TOKENS),
        "prompt_format_version": PROMPT_FORMAT_VERSION,
        "k": DEFAULT_K,
    }
    save_hyperlora_adapter(
        model,
        tokenizer,
        directory / "run" / "adapter",
        base_model_name_or_path=str(base_dir),
        extra_config=extra,
    )
    return directory / "run"


def test_end_to_end_with_a_real_tiny_janus_agent(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    run = _tiny_run(tmp_path)
    config = small_config(
        tmp_path,
        run=run,  # JanusAgent.from_pretrained, and from_base on the base the adapter records
        opponents=["conceder_fast"],
        held_out=["conceder_fast"],
        rho_grid=[0.0, 0.5, 1.0],
        configurations=["base", "standard"],
        scripted_baselines=False,
        domain=DomainConfig(max_turns=8),  # short episodes keep the test fast
        plots=True,
    )
    threads = torch.get_num_threads()
    result = evaluate(config)  # plays on 1 thread
    assert torch.get_num_threads() == threads  # and restores torch's setting
    summary = result.summary
    context = summary.run.context
    assert context.agent == "janus" and context.base_agent == "base"
    assert context.base_model == str(tmp_path / "janus-tiny")
    assert summary.run.episodes == 4 * 2 + 3 * 3 * 4
    assert summary.calibration.opponents == ("conceder_fast",)
    assert summary.calibration_in_pool is None
    assert summary.agreements_outside_zopa == 0  # safety is on
    rows = read_csv(result.episodes_csv)
    assert sum(int(r["decisions"]) for r in rows) > 0
    assert summary.invalid_actions == sum(int(r["invalid_actions"]) for r in rows)
    assert "calibration" in result.plots
    assert "configuration" in headline_table(summary)

    # The ablation seats really decouple the channels: text-only at ρ* = 0.5 (gates 0.5) and
    # weights-only at ρ* = 0.5 (prompt 0.5) are both the full dial at 0.5.
    def games(channels: str) -> list[str]:
        return [
            r["offers"]
            for r in rows
            if r["configuration"] == SWEEP and r["channels"] == channels
            and r["requested_rho"] == "0.50"
        ]  # fmt: skip

    assert games("text") == games("both") == games("weights")


# ------------------------------------------------------------------ bargaining habits


class _Moves:
    """A negotiator that plays a fixed list of moves (a price, or "accept")."""

    def __init__(self, name: str, moves: list) -> None:
        self.name = name
        self.moves = list(moves)

    def act(self, observation: Observation) -> Action:
        move = self.moves.pop(0)
        return Action.accept() if move == "accept" else Action.offer(move)


def test_offer_habits_count_repeats_retreats_worse_counters_and_walk_aways() -> None:
    from janus.domain import Scenario
    from janus.episode import Match, run_episode
    from janus.evaluation.harness import offer_habits

    scenario = Scenario(buyer_max=900.0, seller_min=500.0, first_mover=Role.BUYER, max_turns=6)
    # Janus sells: it repeats 1000 once, then counters 750 while the buyer offers 800
    # (worse for itself), and the game ends in impasse with 800 once on the table.
    buyer = _Moves("buyer", [600.0, 700.0, 800.0])
    seller = _Moves("janus", [1000.0, 1000.0, 750.0])
    result = run_episode(Match(buyer, seller, scenario))
    assert not result.outcome.agreement
    habits = offer_habits(result, Role.SELLER)
    assert (habits.repeated, habits.worse, habits.retreats, habits.walked_away) == (1, 1, 0, True)
    # The buyer: no repeats, never countered worse than a standing offer, and it never
    # had an acceptable offer (every seller offer was above its 900 ... except 750).
    buyer_habits = offer_habits(result, Role.BUYER)
    assert (buyer_habits.repeated, buyer_habits.worse, buyer_habits.retreats) == (0, 0, 0)
    assert buyer_habits.walked_away is False  # 750 came on the last turn
    # A seller that asks more than it asked before retreats (twice here); lowering is not.
    hardening = run_episode(
        Match(_Moves("b", [600.0, 610.0, 620.0]), _Moves("s", [800.0, 850.0, 820.0]), scenario)
    )
    assert offer_habits(hardening, Role.SELLER).retreats == 1
    assert offer_habits(hardening, Role.BUYER).retreats == 0
    lowball = run_episode(
        Match(_Moves("b", [600.0, 550.0, 500.0]), _Moves("s", [800.0, 800.0, 800.0]), scenario)
    )
    assert offer_habits(lowball, Role.BUYER).retreats == 2
    # A deal is never a walk-away.
    deal = run_episode(Match(_Moves("b", [600.0, "accept"]), _Moves("s", [700.0]), scenario))
    assert deal.outcome.agreement and offer_habits(deal, Role.BUYER).walked_away is False


def test_an_adapter_with_a_map_is_evaluated_calibrated_and_raw_side_by_side(
    tmp_path: Path,
) -> None:
    from janus.calibration import fit_calibration_map

    run = _tiny_run(tmp_path)
    grid = (0.0, 0.5, 1.0)
    rows = [(role, g, 0.2 + 0.6 * g) for role in ("buyer", "seller") for g in grid]
    fit_calibration_map(rows, grid, opponents=["linear"], seed=0).save(run / "adapter")
    config = small_config(
        tmp_path,
        run=run,
        opponents=["conceder_fast"],
        held_out=["conceder_fast"],
        rho_grid=list(grid),
        configurations=["standard"],
        scripted_baselines=False,
        ablations=False,
        episodes_per_cell=1,
        domain=DomainConfig(max_turns=6),
    )
    summary = evaluate(config).summary
    assert summary.calibrated is True
    assert summary.calibration_raw.held_out.episodes == 3 * 2
    assert summary.calibration.episodes == 3 * 2
    assert summary.run.context.calibration_map["opponents"] == ("linear",)
    rows_csv = read_csv(tmp_path / "report" / "episodes.csv")
    mapped = [r for r in rows_csv if r["configuration"] == SWEEP]
    raw = [r for r in rows_csv if r["configuration"] == "sweep-raw"]
    assert {r["calibrated"] for r in mapped} == {"1"} and {r["calibrated"] for r in raw} == {"0"}
    # The map's inverse: ρ* 0.5 → dial (0.5 − 0.2) / 0.6 = 0.5; ρ* 0 is out of reach → 0.
    assert {r["dial_rho"] for r in mapped if r["requested_rho"] == "0.50"} == {"0.50"}
    assert {r["outside_reachable"] for r in mapped if r["requested_rho"] == "0.00"} == {"1"}
    assert {r["dial_rho"] for r in raw if r["requested_rho"] == "0.00"} == {"0.00"}
    raw_only = evaluate(
        small_config(tmp_path, "raw", **{**config.__dict__, "out": tmp_path / "raw", "raw": True})
    ).summary
    assert raw_only.calibrated is False and raw_only.calibration_raw is None
