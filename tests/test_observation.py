"""Observations checked at the agent's door; offers on a caller's grid; act()'s counters; threads.

The rules are the episode loop's: every observation the loop makes passes (scripted games,
and Janus's own invalid opening), and each way of breaking them is named in one line.
"""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from janus.agent import JanusAgent
from janus.checkpoint import resize_for_tokenizer
from janus.domain import DomainConfig, Observation, Offer, PriceRange, Role, sample_scenario
from janus.episode import Match, run_episode
from janus.examples import add_special_tokens
from janus.hyperlora import inject_hyperlora
from janus.observation import ObservationError, check_observation, snap_price
from janus.strategies import create_strategy, training_pool
from janus.tiny import build_model, build_tokenizer


def _buyer_at(turn: int = 4, standing: float = 700.0, **changes) -> Observation:
    """A buyer (reservation 800) at ``turn`` after alternating offers, the seller's last."""
    movers = [(t, Role.BUYER if (turn - t) % 2 == 0 else Role.SELLER) for t in range(1, turn - 1)]
    history = tuple(
        Offer(m, 400.0 + 20 * t if m is Role.BUYER else 1000.0 - 20 * t, t) for t, m in movers
    )
    observation = Observation(
        role=Role.BUYER,
        reservation=800.0,
        price_range=PriceRange(),
        turn=turn,
        max_turns=20,
        standing_offer=standing,
        history=(*history, Offer(Role.SELLER, standing, turn - 1)),
    )
    return dataclasses.replace(observation, **changes)


def test_every_observation_of_the_episode_loop_passes() -> None:
    pool = training_pool()
    rng = random.Random(0)
    seen = 0
    for i in range(60):
        scenario = sample_scenario(DomainConfig(), rng, Role.BUYER if i % 2 else Role.SELLER)
        buyer = create_strategy(rng.choice(pool), seed=i)
        seller = create_strategy(rng.choice(pool), seed=i + 1000)
        for step in run_episode(Match(buyer, seller, scenario, i)).steps:
            check_observation(step.observation)
            seen += 1
    assert seen > 200


BAD = [
    # (what is wrong, the observation, words the one-line message must contain)
    (
        "standing offer, empty history",
        _buyer_at(history=()),
        "standing_offer=700.0; expected None (the history is empty",
    ),
    ("turn past the clock", _buyer_at(turn=21), "turn=21; expected an integer in 1..20"),
    ("turn zero", _buyer_at(history=(), standing=None, turn=0), "turn=0; expected"),
    (
        "wrong parity",
        _buyer_at(history=(Offer(Role.BUYER, 900.0, 2), Offer(Role.BUYER, 700.0, 3))),
        "history[1].role=buyer; expected seller (turn 3 is the seller's",
    ),
    (
        "a gap",
        _buyer_at(
            turn=6,
            history=(
                Offer(Role.SELLER, 1000.0, 1),
                Offer(Role.BUYER, 500.0, 2),
                Offer(Role.SELLER, 700.0, 5),
            ),
        ),
        "history[2].turn=5; expected 3",
    ),
    (
        "the latest offer is old",
        _buyer_at(turn=6, history=(Offer(Role.SELLER, 700.0, 3),)),
        "history[0].turn=3; expected 5",
    ),
    ("standing offer not the latest", _buyer_at(standing_offer=650.0), "standing_offer=650.0"),
    ("no standing offer", _buyer_at(standing_offer=None), "standing_offer=None; expected 700.0"),
    ("role as a string", _buyer_at(role="buyer"), "role='buyer'; expected a janus.domain.Role"),
    ("reservation nan", _buyer_at(reservation=math.nan), "reservation=nan"),
    ("reservation off range", _buyer_at(reservation=1600.0), "inside the public range"),
    (
        "offer price off range",
        _buyer_at(history=(Offer(Role.SELLER, 99.0, 3),), standing=99.0),
        "history[0].price=99.0",
    ),
    ("offer from the future", _buyer_at(history=(Offer(Role.SELLER, 700.0, 4),)), "turn=4"),
]


@pytest.mark.parametrize(("observation", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_each_inconsistency_is_named_in_one_line(observation: Observation, words: str) -> None:
    with pytest.raises(ObservationError) as caught:
        check_observation(observation)
    message = str(caught.value)
    assert words in message and "\n" not in message


def test_turns_without_an_offer_are_allowed_only_before_the_first_one() -> None:
    # Turns 1-2 passed on invalid ACCEPTs (nothing on the table): the loop records those.
    opened_late = (Offer(Role.BUYER, 500.0, 3), Offer(Role.SELLER, 900.0, 4))
    check_observation(_buyer_at(turn=5, history=opened_late, standing=900.0))
    check_observation(_buyer_at(turn=7, history=(), standing=None))


@pytest.fixture(scope="module")
def agent() -> JanusAgent:
    tokenizer = build_tokenizer()
    token_ids = add_special_tokens(tokenizer)
    model = build_model("tiny", tokenizer, seed=0)
    resize_for_tokenizer(model, tokenizer)
    inject_hyperlora(model, rank=4, alpha=8, hyper_hidden=8, trainable_token_ids=token_ids)
    return JanusAgent(model, tokenizer)


class _Answers:
    """Stands in for the model's decoding: fixed answers, and whether it was ever called."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.calls = 0

    def __call__(self, gate_rhos, prompts, offer_only=None):
        self.calls += 1
        return [self.answer] * len(prompts)


def test_a_bad_observation_is_refused_before_any_model_work(agent, monkeypatch) -> None:
    decode = _Answers("OFFER 0.3000")
    monkeypatch.setattr(agent, "_decode", decode)
    good, bad = _buyer_at(), _buyer_at(turn=21)
    with pytest.raises(ObservationError, match=r"^observation 1: turn=21; expected"):
        agent.act_batch([agent.seat(0.5), agent.seat(0.5)], [good, bad])
    with pytest.raises(ObservationError, match=r"^observation: standing_offer=700.0"):
        agent.act(_buyer_at(history=()), 0.5)
    with pytest.raises(ValueError, match="2 seats and 1 observations"):
        agent.act_batch([agent.seat(0.5)] * 2, [good])
    assert decode.calls == 0


def test_act_keeps_its_seats_counters(agent, monkeypatch) -> None:
    # 0.9 -> 1370 is past the buyer's 800: clamped, every time, and counted every time.
    monkeypatch.setattr(agent, "_decode", _Answers("OFFER 0.9000"))
    monkeypatch.setattr(agent, "rules", ())
    monkeypatch.setattr(agent, "act_seats", {})
    for _ in range(3):
        assert agent.act(_buyer_at(), 0.4).price == 800.0
    seller = _buyer_at(role=Role.SELLER, reservation=600.0)
    seller = dataclasses.replace(
        seller,
        history=tuple(dataclasses.replace(o, role=o.role.opponent) for o in seller.history),
    )
    agent.act(seller, 0.4)
    assert sorted(agent.act_seats) == [(0.4, "buyer"), (0.4, "seller")]
    assert agent.act_seats[(0.4, "buyer")].stats.decisions == 3
    assert agent.act_seats[(0.4, "buyer")].stats.safety_clamped_offers == 3
    total = agent.act_stats
    assert total.decisions == 4 and total.safety_clamped_offers == 3


# ------------------------------------------------------------------------------ the grid


def _reference_snap(price: float, obs: Observation, step: float, safe: bool) -> float:
    """Brute force: every grid point of the range; the nearest one, or, if that one crosses
    the reservation, the acceptable one nearest the reservation."""
    pr = obs.price_range
    points = [pr.low + k * step for k in range(int((pr.high - pr.low) / step + 1e-9) + 1)]
    nearest = min(points, key=lambda p: (abs(p - price), -p))  # a tie rounds up
    if not safe or obs.is_acceptable(nearest):
        return nearest
    return min((p for p in points if obs.is_acceptable(p)), key=lambda p: abs(p - obs.reservation))


@settings(max_examples=300, deadline=None)
@given(
    role=st.sampled_from([Role.BUYER, Role.SELLER]),
    reservation=st.floats(200.0, 1490.0),
    price=st.floats(200.0, 1500.0),
    step=st.sampled_from([1.0, 2.5, 7.0, 10.0, 50.0]),
    safe=st.booleans(),
)
def test_snap_price_matches_a_brute_force_reference(role, reservation, price, step, safe) -> None:
    obs = Observation(role, reservation, PriceRange(), 3, 20, None, ())
    snapped = snap_price(price, obs, step, safe=safe)
    expected = _reference_snap(price, obs, step, safe)
    assert snapped == pytest.approx(expected, abs=1e-6)
    assert 200.0 <= snapped <= 1500.0
    if safe:
        assert obs.is_acceptable(snapped)
    index = (snapped - 200.0) / step
    assert abs(index - round(index)) < 1e-6


@pytest.mark.parametrize(
    ("role", "reservation", "decoded", "expected"),
    [
        (Role.BUYER, 800.0, "OFFER 0.4213", 750.0),  # 747.69 -> nearest 750
        (Role.BUYER, 797.0, "OFFER 0.4585", 790.0),  # 796.05 -> 800 crosses 797: 790
        (Role.BUYER, 797.0, "OFFER 0.9000", 790.0),  # clamped to 797, then 790
        (Role.SELLER, 603.0, "OFFER 0.3095", 610.0),  # 602.35 -> clamped 603 -> 610
        (Role.SELLER, 603.0, "OFFER 0.6000", 980.0),  # 980 is on the grid
    ],
)
def test_the_agent_offers_on_the_callers_grid(
    agent, monkeypatch, role, reservation, decoded, expected
):
    monkeypatch.setattr(agent, "_decode", _Answers(decoded))
    monkeypatch.setattr(agent, "rules", ())
    monkeypatch.setattr(agent, "price_step", 10.0)
    obs = Observation(role, reservation, PriceRange(), 1, 20, None, ())
    [action] = agent.act_batch([agent.seat(0.5)], [obs])
    assert action.price == expected


def test_a_grid_with_no_safe_point_is_refused_at_the_door(agent) -> None:
    # Range [200, 1505], step 10: the highest grid point is 1500, below this seller's 1502.
    obs = Observation(Role.SELLER, 1502.0, PriceRange(200.0, 1505.0), 1, 20, None, ())
    check_observation(obs)
    with pytest.raises(ObservationError, match=r"reservation=1502.0; expected a price with a"):
        check_observation(obs, price_step=10.0)
    with pytest.raises(ValueError, match=r"price_step=0; expected a finite number > 0"):
        JanusAgent(agent.model, agent.tokenizer, price_step=0)


# --------------------------------------------------------------------------- threads


def test_threads_are_the_agents_own_and_restored_after(agent, monkeypatch) -> None:
    seen: list[int] = []
    hook = agent.model.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    try:
        own = JanusAgent(agent.model, agent.tokenizer, threads=before + 1)
        own.act_batch([own.seat(0.5)], [_buyer_at()])
        assert seen and set(seen) == {before + 1}
        assert torch.get_num_threads() == before
        seen.clear()
        agent.act_batch([agent.seat(0.5)], [_buyer_at()])  # threads=None: torch's setting
        assert set(seen) == {before}
    finally:
        hook.remove()
    with pytest.raises(ValueError, match=r"threads=0; expected an integer >= 1"):
        JanusAgent(agent.model, agent.tokenizer, threads=0)
