"""Janus in NegMAS: the state → observation mapping, a real SAOMechanism, batching that
changes nothing, NegMAS opponents in janus evaluate, and a NegMAS tournament."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from negmas import SAOMechanism
from negmas.outcomes import make_os
from negmas.sao.negotiators import (
    BoulwareTBNegotiator,
    ConcederTBNegotiator,
    LinearTBNegotiator,
)

from janus.agent import JanusAgent
from janus.checkpoint import resize_for_tokenizer
from janus.domain import Action, Observation, PriceRange, Role, Scenario
from janus.episode import Match, run_episode
from janus.evaluation import EvaluationConfig, evaluate, make_plan
from janus.examples import add_special_tokens
from janus.hyperlora import inject_hyperlora, iter_hyperlora_layers
from janus.integrations.negmas import (
    DecisionBatcher,
    JanusNegotiator,
    PolicyNegotiator,
    run_negotiations,
)
from janus.integrations.negmas.mapping import (
    max_turns_of,
    price_issue,
    price_ufuns,
    read_side,
    snap_price,
)
from janus.tiny import build_model, build_tokenizer

# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def agent() -> JanusAgent:
    """A random janus-tiny with a HyperLoRA adapter (random B, so ρ matters)."""
    tokenizer = build_tokenizer()
    token_ids = add_special_tokens(tokenizer)
    model = build_model("tiny", tokenizer, seed=0)
    resize_for_tokenizer(model, tokenizer)
    inject_hyperlora(model, rank=4, alpha=8, hyper_hidden=8, trainable_token_ids=token_ids)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, layer in iter_hyperlora_layers(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator) * 0.5)
    return JanusAgent(model, tokenizer)


class CountingAgent:
    """Wraps an agent and counts its ``act_batch`` calls (forward passes) and sizes."""

    def __init__(self, inner: JanusAgent) -> None:
        self.inner = inner
        self.batches: list[int] = []
        self.lock = threading.Lock()

    def seat(self, rho, **kwargs):
        seat = self.inner.seat(rho, **kwargs)
        seat.batch_policy = self
        return seat

    def act_batch(self, seats, observations):
        with self.lock:
            self.batches.append(len(seats))
        return self.inner.act_batch(seats, observations)


class Schedule:
    """A fixed policy: offers ``prices[k]`` at its k-th turn, accepts a standing offer at
    least as good as ``accept_at``. Keeps every observation it was shown."""

    strict = True

    def __init__(self, name: str, prices: list[float], accept_at: float) -> None:
        self.name, self.prices, self.accept_at = name, prices, accept_at
        self.seen: list[Observation] = []

    def act(self, obs: Observation) -> Action:
        self.seen.append(obs)
        o = obs.standing_offer
        if o is not None and obs.better_or_equal(o, self.accept_at):
            return Action.accept()
        return Action.offer(self.prices[len(obs.own_offers)])


def mechanism(buyer, seller, buyer_max=900.0, seller_min=500.0, first=Role.BUYER, **kw):
    issue = price_issue()
    b, s = price_ufuns(issue, buyer_max, seller_min)
    m = SAOMechanism(issues=[issue], n_steps=kw.pop("n_steps", 20), one_offer_per_step=True)
    for role in (first, first.opponent):
        m.add(buyer if role is Role.BUYER else seller, ufun=b if role is Role.BUYER else s)
    return m


# ----------------------------------------------------------------------------- mapping


def test_reservation_and_role_come_from_the_ufun_exactly() -> None:
    for integer in (True, False):
        issue = price_issue(integer=integer)
        buyer, seller = price_ufuns(issue, 900.37, 500.25)
        b, s = read_side(buyer, make_os([issue])), read_side(seller, make_os([issue]))
        assert (b.role, s.role) == (Role.BUYER, Role.SELLER)
        assert b.reservation == pytest.approx(900.37, abs=1e-9)
        assert s.reservation == pytest.approx(500.25, abs=1e-9)
        assert b.price_range == PriceRange(200.0, 1500.0)
        assert (b.grid is None) is (not integer)


def test_snapping_to_the_grid_never_crosses_the_reservation() -> None:
    issue = price_issue()
    buyer, seller = price_ufuns(issue, 900.37, 500.25)
    b, s = read_side(buyer, make_os([issue])), read_side(seller, make_os([issue]))
    assert snap_price(812.4, b) == 812.0 and snap_price(812.6, b) == 813.0
    assert snap_price(900.37, b) == 900.0  # nearest is 900: fine
    assert snap_price(900.2, b) == 900.0
    assert snap_price(500.25, s) == 501.0  # nearest (500) would cross: the seller keeps 501
    assert snap_price(500.4, s) == 501.0
    # already past it (safety off): rounding does not pretend otherwise
    assert snap_price(499.2, s) == 499.0
    for cents in range(45000, 95000, 7):
        p = cents / 100  # every acceptable price stays acceptable once on the grid
        assert p > 900.37 or snap_price(p, b) <= 900.37
        assert p < 500.25 or snap_price(p, s) >= 500.25
        assert abs(snap_price(p, b) - p) <= 1 and abs(snap_price(p, s) - p) <= 1


def test_turn_limit_is_actions_not_rounds() -> None:
    issue = price_issue()
    atomic = SAOMechanism(issues=[issue], n_steps=20, one_offer_per_step=True)
    rounds = SAOMechanism(issues=[issue], n_steps=10)
    assert max_turns_of(atomic.internal_nmi) == 20
    assert max_turns_of(rounds.internal_nmi) == 20


# ------------------------------------------------------------------- a real mechanism


def test_janus_negotiator_in_a_real_mechanism_ends_with_a_valid_outcome(agent) -> None:
    janus = JanusNegotiator(agent, rho=0.3)
    m = mechanism(janus, BoulwareTBNegotiator(), first=Role.SELLER)
    state = m.run()
    assert state.ended and not state.has_error and not janus.invalid
    turns = [obs.turn for obs, _ in janus.trace]
    assert turns == list(range(2, 2 * len(turns) + 1, 2))  # Janus (buyer) moves second
    offers = [o for o in janus.history if o.role is Role.BUYER]
    assert all(o.price.is_integer() and 200 <= o.price <= 900.0 for o in offers)
    if state.agreement is not None:
        assert state.agreement[0] <= 900.0  # never a deal past the buyer's reservation
    else:
        assert state.timedout and state.step == 20
    assert janus.seat.requested_rho == 0.3 and janus.seat.stats.decisions == len(turns)


def test_turns_and_observations_are_counted_as_janus_counts_them() -> None:
    """The same two fixed policies in Janus's loop and in NegMAS see the same observations
    and reach the outcome computed by hand."""

    def policies():
        buyer = Schedule("buyer", [400 + 100 * k for k in range(10)], accept_at=700)
        seller = Schedule("seller", [1000 - 50 * k for k in range(10)], accept_at=800)
        return buyer, seller

    buyer, seller = policies()
    scenario = Scenario(buyer_max=900.0, seller_min=500.0, first_mover=Role.BUYER)
    janus = run_episode(Match(buyer, seller, scenario))
    nb, ns = policies()
    m = mechanism(PolicyNegotiator(nb), PolicyNegotiator(ns))
    state = m.run()
    # By hand: B400 S1000 B500 S950 B600 S900 B700 S850 B800, and the seller (accepting
    # at >= 800) takes 800 at turn 10: rho = (800 - 500) / 400 = 0.75.
    assert state.agreement == (800,)
    assert janus.outcome.final_price == 800 and janus.outcome.turns == 10
    assert janus.outcome.rho == pytest.approx(0.75)
    assert len(m.extended_trace) == 9 and state.step == 10
    assert [o.turn for o in nb.seen] == [1, 3, 5, 7, 9]
    assert [o.turns_remaining for o in ns.seen] == [18, 16, 14, 12, 10]
    for mine, theirs in ((nb, buyer), (ns, seller)):
        assert mine.seen == theirs.seen  # turn, clock, standing offer, history: all equal


def test_an_invalid_action_ends_the_negotiation_and_is_recorded() -> None:
    class OpensWithAccept:
        name = "opens-with-accept"

        def act(self, obs):
            return Action.accept()

    janus = PolicyNegotiator(OpensWithAccept())
    m = mechanism(janus, BoulwareTBNegotiator())
    state = m.run()
    assert state.broken and state.agreement is None
    assert janus.invalid == [(1, "ACCEPT with no standing offer")]


# -------------------------------------------------------------------------- batching


def _negotiations(agent, batcher=None):
    # deterministic opponents (MiCRO draws among equal offers from the global RNG)
    opponents = [BoulwareTBNegotiator, ConcederTBNegotiator, LinearTBNegotiator]
    built = []
    for i, cls in enumerate(opponents * 2):
        janus = JanusNegotiator(agent, rho=[0.1, 0.5, 0.9][i % 3], batcher=batcher)
        role = Role.BUYER if i % 2 == 0 else Role.SELLER
        pair = (janus, cls()) if role is Role.BUYER else (cls(), janus)
        first = Role.SELLER if i % 4 < 2 else Role.BUYER
        pair_kw = dict(buyer_max=880.0 + 10 * i, seller_min=450.0, first=first, n_steps=12)
        built.append(mechanism(*pair, **pair_kw))
    return built


def _outcomes(mechanisms):
    return [(m.agreement, [o for _, _, o in m.extended_trace]) for m in mechanisms]


def test_batched_and_unbatched_play_give_identical_outcomes(agent) -> None:
    one_by_one = CountingAgent(agent)
    alone = _negotiations(one_by_one)
    for m in alone:
        m.run()
    lockstep_agent = CountingAgent(agent)
    lockstep = _negotiations(lockstep_agent)
    run_negotiations(lockstep)
    threaded_agent, batcher = CountingAgent(agent), DecisionBatcher(max_wait=5.0)
    threaded = _negotiations(threaded_agent, batcher)
    with ThreadPoolExecutor(len(threaded)) as pool:
        list(pool.map(lambda m: m.run(), threaded))
    reference = _outcomes(alone)
    assert _outcomes(lockstep) == reference
    assert _outcomes(threaded) == reference
    decisions = sum(one_by_one.batches)
    assert one_by_one.batches == [1] * decisions
    assert sum(lockstep_agent.batches) == decisions == sum(threaded_agent.batches)
    # one forward pass per round, not per decision
    # (half the mechanisms have Janus to move at each step)
    assert max(lockstep_agent.batches) == 3 and len(lockstep_agent.batches) <= 12
    assert max(batcher.batch_sizes) >= 3


class EchoPolicy:
    """A batch policy whose seats offer their own index; counts its batches."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail

    def seat(self, index: int):
        return SimpleNamespace(batch_policy=self, index=index)

    def act_batch(self, seats, observations):
        self.batches.append(sorted(s.index for s in seats))
        if self.fail:
            raise RuntimeError("model broke")
        return [Action.offer(500.0 + s.index) for s in seats]


def _decide_all(batcher, policy, indices):
    # the batcher passes observations through untouched; the policy ignores them
    with ThreadPoolExecutor(len(indices)) as pool:
        futures = [pool.submit(batcher.decide, policy.seat(i), None) for i in indices]
        return [f.result().price if f.exception() is None else f.exception() for f in futures]


def test_the_batcher_answers_a_full_set_a_set_completed_by_a_leaver_and_a_late_one() -> None:
    policy, batcher = EchoPolicy(), DecisionBatcher(max_wait=30.0)
    for _ in range(4):
        batcher.enter()
    # every registered negotiation asks: one batch, each answer its own
    assert _decide_all(batcher, policy, [0, 1, 2, 3]) == [500.0, 501.0, 502.0, 503.0]
    assert policy.batches == [[0, 1, 2, 3]] and batcher.batch_sizes == [4]
    # three ask and the fourth negotiation ends instead: its leaving completes the set
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(_decide_all, batcher, policy, [4, 5, 6])
        while len(batcher._queue) < 3:
            time.sleep(0.01)
        batcher.leave()
        assert pending.result(timeout=10) == [504.0, 505.0, 506.0]
    assert policy.batches[-1] == [4, 5, 6]
    # a registered negotiation that never asks: the others are answered after max_wait
    late, late_policy = DecisionBatcher(max_wait=0.2), EchoPolicy()
    for _ in range(3):
        late.enter()
    start = time.monotonic()
    assert _decide_all(late, late_policy, [7, 8]) == [507.0, 508.0]
    assert 0.2 <= time.monotonic() - start < 10 and late_policy.batches == [[7, 8]]


def test_a_failed_batch_reaches_every_waiting_decision() -> None:
    batcher = DecisionBatcher(max_wait=30.0)
    for _ in range(3):
        batcher.enter()
    answers = _decide_all(batcher, EchoPolicy(fail=True), [0, 1, 2])
    assert [str(a) for a in answers] == ["model broke"] * 3


# ------------------------------------------------------------------------ evaluation


class ScriptedAgent:
    """A fast stand-in for JanusAgent: seats are scripted ``linear`` strategies whose
    decisions come through ``act_batch`` (counted)."""

    label = "scripted"

    def __init__(self) -> None:
        self.batches: list[int] = []

    def seat(self, rho, *, channels="both", fixed_rho=0.5, name=None, calibrated=True, role=None):
        from janus.strategies import create_strategy

        seat = create_strategy("linear", seed=int(rho * 100))
        seat.batch_policy, seat.name, seat.strict = self, name or "scripted", False
        return seat

    def act_batch(self, seats, observations):
        self.batches.append(len(seats))
        return [type(s).act(s, o) for s, o in zip(seats, observations, strict=True)]


def _config(tmp_path: Path, **overrides) -> EvaluationConfig:
    values = dict(
        out=tmp_path / "report",
        opponents=["negmas:BoulwareTBNegotiator", "negmas:RandomNegotiator", "boulware"],
        baseline_strategies=["negmas:MiCRONegotiator", "linear"],
        configurations=["standard"],
        rho_grid=[0.0, 0.5, 1.0],
        episodes_per_cell=2,
        ablations=False,
        bootstrap_resamples=50,
        plots=False,
        progress=False,
    )
    values.update(overrides)
    return EvaluationConfig(**values)


def test_negmas_opponents_in_janus_evaluate(tmp_path: Path) -> None:
    agent = ScriptedAgent()
    result = evaluate(_config(tmp_path), agent=agent)
    s = result.summary
    assert set(s.run.held_out_opponents) == {
        "negmas:BoulwareTBNegotiator",
        "negmas:RandomNegotiator",
    }  # NegMAS's negotiators are held out without being told
    assert max(agent.batches) > 1  # decisions of concurrent NegMAS negotiations batched
    block = json.loads((result.out_dir / "negmas.json").read_text(encoding="utf-8"))
    assert set(block["opponents"]) == {"negmas:BoulwareTBNegotiator", "negmas:RandomNegotiator"}
    assert "negmas:MiCRONegotiator" in block["in_janus_seat"]
    seat = s.configurations["script:negmas:MiCRONegotiator"]
    assert seat.strategy == "negmas:MiCRONegotiator" and seat.by_opponent["boulware"].episodes
    with open(result.episodes_csv, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    negmas_rows = [r for r in rows if r["opponent"].startswith("negmas:")]
    # 2 NegMAS opponents x 2 roles x 2 episodes x (standard + 3 sweep points + 2 baselines)
    assert len(negmas_rows) == 2 * 2 * 2 * (1 + 3 + 2) and all(r["turns"] for r in negmas_rows)
    # ... and a NegMAS negotiator in Janus's seat meets the scripted opponent too
    assert (
        sum(
            r["configuration"] == "script:negmas:MiCRONegotiator" and r["opponent"] == "boulware"
            for r in rows
        )
        == 4
    )
    # irrational deals are reported as played: a listed deal really is past that side's
    # reservation, and its achieved rho lies outside [0, 1] (nothing clipped)
    for deal in block["irrational_deals"]:
        role = (
            deal["janus_role"]
            if deal["irrational_side"] == "seat"
            else ("seller" if deal["janus_role"] == "buyer" else "buyer")
        )
        past = (
            deal["final_price"] > deal["reservation"]
            if role == "buyer"
            else (deal["final_price"] < deal["reservation"])
        )
        assert past and not 0.0 <= deal["achieved_rho"] <= 1.0
    flagged = {o for o, b in block["opponents"].items() if b["irrational"]}
    assert flagged == set(block["irrational_opponents"])
    assert "negmas:BoulwareTBNegotiator" not in flagged  # a time-based agent stays rational
    assert "## NegMAS negotiators" in result.report_md.read_text(encoding="utf-8")


def test_negmas_episodes_are_paired_and_reproducible(tmp_path: Path) -> None:
    config = dict(opponents=["negmas:RandomNegotiator"], baseline_strategies=[])
    first = evaluate(_config(tmp_path, out=tmp_path / "a", **config), agent=ScriptedAgent())
    again = evaluate(
        _config(tmp_path, out=tmp_path / "b", batch_size=3, **config), agent=ScriptedAgent()
    )
    a = first.episodes_csv.read_text(encoding="utf-8")
    b = again.episodes_csv.read_text(encoding="utf-8")
    assert a == b  # a random opponent, other batches: the same episodes


def test_the_negmas_preset_is_a_second_held_out_set() -> None:
    from janus.evaluation.presets import apply_evaluation_preset
    from janus.integrations.negmas import DEFAULT_OPPONENTS

    plan = make_plan(apply_evaluation_preset("negmas", {"run": "runs/x"}))
    assert plan.opponents == DEFAULT_OPPONENTS == plan.held_out_opponents
    assert plan.baselines == DEFAULT_OPPONENTS and plan.in_pool == ()
    assert "negmas:RandomNegotiator" in DEFAULT_OPPONENTS  # the irrational case is played


def test_unknown_negmas_names_fail_in_one_line_before_playing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown NegMAS negotiator 'negmas:NoSuch'"):
        make_plan(_config(tmp_path, opponents=["negmas:NoSuch"]))


def test_without_negmas_a_negmas_opponent_says_how_to_install_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "negmas", None)  # as if it were not installed
    with pytest.raises(ValueError, match=r"needs NegMAS, which is not installed: pip install"):
        make_plan(_config(tmp_path))


def test_the_core_never_imports_negmas() -> None:
    code = (
        "import sys, janus, janus.cli, janus.evaluation, janus.evaluation.harness, "
        "janus.integrations.negmas; "
        "assert 'negmas' not in sys.modules, 'negmas imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------ tournament


def test_a_negmas_tournament_batched_equals_one_by_one(agent) -> None:
    from negmas.tournaments.neg import cartesian_tournament

    from janus.integrations.negmas import janus_competitors, pair_table, price_scenarios
    from janus.integrations.negmas.tournament import tournament_kwargs

    scenarios = price_scenarios(1, seed=3)
    tables = []
    for batched in (True, False):
        competitors = janus_competitors(agent, [0.2, 0.8], batched=batched)
        results = cartesian_tournament(
            **competitors,
            opponents=[ConcederTBNegotiator],
            scenarios=scenarios,
            **tournament_kwargs(),
            executor="thread",
            njobs=8 if batched else -1,
            randomize_runs=False,
        )
        tables.append(pair_table(results, scenarios))
        batcher = competitors["competitor_params"][0]["batcher"]
        if batched:
            assert max(batcher.batch_sizes) >= 2
    assert tables[0] == tables[1]
    janus_rows = [r for r in tables[0] if r["negotiator"].startswith("janus@")]
    assert [r["negotiations"] for r in janus_rows] == [2, 2]  # both roles, each rho
