"""JanusAgent: batching changes nothing, safety rules intervene and are counted, channels."""

from __future__ import annotations

import io
import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from janus.agent import JanusAgent, prompt_state, resolve_adapter_dir, resolve_dtype
from janus.checkpoint import resize_for_tokenizer, save_hyperlora_adapter
from janus.domain import DomainConfig, Observation, Offer, PriceRange, Role, sample_scenario
from janus.episode import Match, run_episode, run_episodes
from janus.examples import add_special_tokens
from janus.hyperlora import inject_hyperlora, iter_hyperlora_layers
from janus.play import PlayerQuit, play_game
from janus.prompt import PROMPT_FORMAT_VERSION
from janus.rules import FRESH_STEP
from janus.strategies import create_strategy
from janus.tiny import build_model, build_tokenizer


def _model_and_tokenizer(seed: int = 0):
    tokenizer = build_tokenizer()
    token_ids = add_special_tokens(tokenizer)
    model = build_model("tiny", tokenizer, seed=seed)
    resize_for_tokenizer(model, tokenizer)
    inject_hyperlora(model, rank=4, alpha=8, hyper_hidden=8, trainable_token_ids=token_ids)
    # A trained adapter has B != 0; give it random B so that ρ changes the output.
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in iter_hyperlora_layers(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator) * 0.5)
    return model, tokenizer


@pytest.fixture(scope="module")
def agent() -> JanusAgent:
    model, tokenizer = _model_and_tokenizer()
    return JanusAgent(model, tokenizer)


def _observation(role: Role, turn: int = 4, standing: float | None = 700.0) -> Observation:
    """``role`` to move at ``turn`` after alternating offers (seller 1100, buyer 500), the
    opponent's latest being ``standing``; ``None``: no offer yet."""
    opening = {Role.SELLER: 1100.0, Role.BUYER: 500.0}
    history: tuple[Offer, ...] = ()
    if standing is not None:
        movers = [(t, role if (turn - t) % 2 == 0 else role.opponent) for t in range(1, turn - 1)]
        history = (
            *(Offer(m, opening[m], t) for t, m in movers),
            Offer(role.opponent, standing, turn - 1),
        )
    return Observation(
        role=role,
        reservation=800.0 if role is Role.BUYER else 600.0,
        price_range=PriceRange(),
        turn=turn,
        max_turns=20,
        standing_offer=standing,
        history=history,
    )


def test_prompt_state_normalises_prices_and_keeps_the_history_order() -> None:
    state = prompt_state(_observation(Role.BUYER))
    assert state.reservation_norm == pytest.approx((800 - 200) / 1300)
    assert [r for r, _ in state.history] == ["seller", "buyer", "seller"]
    assert state.last_offer_norm == pytest.approx((700 - 200) / 1300)


def test_batched_decisions_equal_one_by_one(agent: JanusAgent) -> None:
    rng = random.Random(0)
    observations = [
        _observation(rng.choice([Role.BUYER, Role.SELLER]), standing=rng.uniform(400, 1000))
        for _ in range(12)
    ]
    rhos = [rng.random() for _ in observations]
    seats = [agent.seat(r) for r in rhos]
    batched = agent.act_batch(seats, observations)
    alone = [agent.act(o, r) for o, r in zip(observations, rhos, strict=True)]
    assert batched == alone
    assert all(s.stats.decisions == 1 for s in seats)


def test_each_seat_rho_reaches_the_adapters_and_the_prompt(agent: JanusAgent) -> None:
    seen: list[torch.Tensor] = []
    hook = agent.model.register_forward_pre_hook(
        lambda module, args: seen.append(module.current_rho.clone())
    )
    try:
        seats = [agent.seat(0.0), agent.seat(0.37), agent.seat(1.0, channels="text")]
        observations = [_observation(Role.SELLER, standing=s) for s in (400.0, 650.0, 900.0)]
        agent.act_batch(seats, observations)
    finally:
        hook.remove()
    assert seen, "the model was never called"
    expected = [0.0, 0.37, 0.5]
    full = [rho.flatten().tolist() for rho in seen if rho.numel() == 3]
    assert full and all(rho == pytest.approx(expected) for rho in full)
    # Smaller forwards are safety re-decodes of refused ACCEPTs: their ρ are a subset.
    for rho in seen:
        assert all(any(abs(v - e) < 1e-6 for e in expected) for v in rho.flatten().tolist())
    prompt = agent.tokenizer.decode(agent._encode(observations[1], seats[1].text_rho))
    assert "<RHO> 0.37" in prompt


def test_channels_decouple_text_and_gate_rho(agent: JanusAgent) -> None:
    text_only = agent.seat(0.9, channels="text", fixed_rho=0.5)
    weights_only = agent.seat(0.9, channels="weights", fixed_rho=0.5)
    both = agent.seat(0.9)
    assert (text_only.text_rho, text_only.gate_rho) == (0.9, 0.5)
    assert (weights_only.text_rho, weights_only.gate_rho) == (0.5, 0.9)
    assert (both.text_rho, both.gate_rho) == (0.9, 0.9)
    with pytest.raises(ValueError, match="channels"):
        agent.seat(0.5, channels="voice")
    with pytest.raises(ValueError):
        agent.seat(1.5)


class _Scripted:
    """Replaces the model's decoding with fixed answers, to exercise the safety rules."""

    def __init__(self, first: list[str], offer_only_answer: str = "OFFER 0.9000") -> None:
        self.first = first
        self.offer_only_answer = offer_only_answer
        self.calls: list[list[bool] | None] = []

    def __call__(self, gate_rhos, prompts, offer_only=None):
        self.calls.append(offer_only)
        if offer_only is None:
            return self.first[: len(prompts)]
        return [self.offer_only_answer] * len(prompts)


def test_unsafe_accept_is_refused_and_the_model_asked_again(agent: JanusAgent, monkeypatch) -> None:
    # Buyer with reservation 800 facing a standing offer of 950: accepting would lose money.
    fake = _Scripted(["ACCEPT"], offer_only_answer="OFFER 0.3000")
    monkeypatch.setattr(agent, "_decode", fake)
    seat = agent.seat(0.2)
    [action] = agent.act_batch([seat], [_observation(Role.BUYER, standing=950.0)])
    assert not action.is_accept
    assert action.price == pytest.approx(200 + 0.3 * 1300)
    assert fake.calls == [None, [True]]
    assert seat.stats.safety_refused_accepts == 1


def test_offers_past_the_reservation_are_clamped_and_counted(
    agent: JanusAgent, monkeypatch
) -> None:
    monkeypatch.setattr(agent, "_decode", _Scripted(["OFFER 0.9000", "OFFER 0.3000"]))
    # The clamped counters (800, 600) are worse than the standing 700: without this the
    # accept_better rule would take the standing offer instead.
    monkeypatch.setattr(agent, "rules", ())
    buyer, seller = agent.seat(0.5), agent.seat(0.5)
    actions = agent.act_batch(
        [buyer, seller], [_observation(Role.BUYER), _observation(Role.SELLER)]
    )
    assert actions[0].price == 800.0  # 0.9 -> 1370 is past the buyer's 800: clamped
    assert actions[1].price == 600.0  # 0.3 -> 590 is below the seller's 600: clamped
    assert buyer.stats.safety_clamped_offers == 1 and seller.stats.safety_clamped_offers == 1


def test_without_safety_nothing_is_changed(monkeypatch) -> None:
    model, tokenizer = _model_and_tokenizer()
    research = JanusAgent(model, tokenizer, safety=False, rules=())
    monkeypatch.setattr(research, "_decode", _Scripted(["OFFER 0.9000"]))
    seat = research.seat(0.5)
    [action] = research.act_batch([seat], [_observation(Role.BUYER)])
    assert action.price == pytest.approx(200 + 0.9 * 1300)
    assert seat.stats.safety_interventions == 0


def test_accept_with_nothing_on_the_table_is_recorded_not_replaced(
    agent: JanusAgent, monkeypatch
) -> None:
    monkeypatch.setattr(agent, "_decode", _Scripted(["ACCEPT"] * 1))
    scenario = sample_scenario(DomainConfig(), random.Random(1), Role.BUYER)
    seat = agent.seat(0.5)
    result = run_episode(Match(seat, create_strategy("linear", seed=1), scenario))
    first = result.steps[0]
    assert first.role is Role.BUYER and first.action.is_accept and not first.valid
    assert result.invalid_actions(Role.BUYER) == 1
    # The turn passed with no offer (nothing substituted); the seller then opened.
    assert result.offers[0].role is Role.SELLER and result.offers[0].turn == 2


def test_episodes_in_lockstep_equal_sequential_play(agent: JanusAgent) -> None:
    def matches():
        out = []
        for i in range(6):
            scenario = sample_scenario(
                DomainConfig(), random.Random(i), Role.BUYER if i % 2 else Role.SELLER
            )
            seat = agent.seat(i / 5)
            opponent = create_strategy("conceder", seed=i)
            out.append(
                Match(seat, opponent, scenario, i) if i < 3 else Match(opponent, seat, scenario, i)
            )
        return out

    finished: list[int] = []
    batched = run_episodes(matches(), on_finished=finished.append)
    sequential = [run_episode(m) for m in matches()]
    assert [r.offers for r in batched] == [r.offers for r in sequential]
    assert [r.outcome for r in batched] == [r.outcome for r in sequential]
    # The progress callback hears of every episode once, in the round that ends it: one
    # decision per round, so an episode of n steps ends in round n.
    ends = Counter(len(r.steps) for r in sequential)
    assert finished == [ends[n] for n in sorted(ends)]


def test_from_pretrained_round_trip(tmp_path: Path) -> None:
    model, tokenizer = _model_and_tokenizer(seed=4)
    base_dir = tmp_path / "base"
    base = build_model("tiny", build_tokenizer(), seed=4)
    base.save_pretrained(base_dir)
    build_tokenizer().save_pretrained(base_dir)
    save_hyperlora_adapter(
        model,
        tokenizer,
        tmp_path / "run" / "adapter",
        base_model_name_or_path=base_dir,
        extra_config={"prompt_format_version": PROMPT_FORMAT_VERSION},
    )
    assert resolve_adapter_dir(tmp_path / "run") == tmp_path / "run" / "adapter"
    loaded = JanusAgent.from_pretrained(tmp_path / "run")
    assert loaded.prompt_version == PROMPT_FORMAT_VERSION
    fresh = JanusAgent(model, tokenizer)
    observations = [_observation(Role.SELLER, standing=s) for s in (500.0, 800.0)]
    assert loaded.act_batch([loaded.seat(0.3)] * 2, observations) == fresh.act_batch(
        [fresh.seat(0.3)] * 2, observations
    )
    with pytest.raises(FileNotFoundError):
        resolve_adapter_dir(tmp_path)


def test_an_adapter_plays_the_prompt_version_it_was_trained_with(tmp_path: Path) -> None:
    model, tokenizer = _model_and_tokenizer(seed=4)
    base_dir = tmp_path / "base"
    build_model("tiny", build_tokenizer(), seed=4).save_pretrained(base_dir)
    build_tokenizer().save_pretrained(base_dir)
    # An adapter that records no format predates the record: it was trained on version 1.
    save_hyperlora_adapter(model, tokenizer, tmp_path / "old", base_model_name_or_path=base_dir)
    old = JanusAgent.from_pretrained(tmp_path / "old")
    assert old.prompt_version == 1
    opening = {role: Observation(role, 700.0, PriceRange(), 1, 20, None, ()) for role in Role}
    texts = {
        (agent.prompt_version, role): agent.tokenizer.decode(
            agent._encode(obs, agent.seat(0.5).text_rho)
        )
        for agent in (old, JanusAgent(model, tokenizer))
        for role, obs in opening.items()
    }
    # Version 1 cannot tell a buyer from a seller with the same reservation; version 2 can.
    assert texts[(1, Role.BUYER)] == texts[(1, Role.SELLER)]
    assert texts[(2, Role.BUYER)] != texts[(2, Role.SELLER)]
    assert "buyer:" in texts[(2, Role.BUYER)] and "seller:" in texts[(2, Role.SELLER)]
    with pytest.raises(ValueError, match="prompt format version 3 is unknown"):
        JanusAgent(model, tokenizer, prompt_version=3)


def test_dtype_auto_plays_in_the_dtype_the_adapter_trained_with(tmp_path: Path) -> None:
    model, tokenizer = _model_and_tokenizer(seed=5)
    base_dir = tmp_path / "base"
    build_model("tiny", build_tokenizer(), seed=5).save_pretrained(base_dir)
    build_tokenizer().save_pretrained(base_dir)
    for name, bf16 in (("fp32", False), ("bf16", True)):
        save_hyperlora_adapter(
            model,
            tokenizer,
            tmp_path / name / "adapter",
            base_model_name_or_path=base_dir,
            extra_config={"train_config": {"bf16": bf16}},
        )
    assert resolve_dtype("auto", {"train_config": {"bf16": True}}) == torch.bfloat16
    assert resolve_dtype("auto", None) == torch.float32
    with pytest.raises(ValueError, match="dtype must be auto or one of"):
        resolve_dtype("float8", None)

    plain = JanusAgent.from_pretrained(tmp_path / "fp32")
    fast = JanusAgent.from_pretrained(tmp_path / "bf16")
    assert plain.dtype == torch.float32 and plain.autocast_dtype is None
    assert fast.dtype == torch.bfloat16 and fast.autocast_dtype == torch.bfloat16
    layer = next(iter_hyperlora_layers(fast.model))[1]
    assert layer.base_layer.weight.dtype == torch.bfloat16 and layer.lora_A.dtype == torch.float32
    assert JanusAgent.from_pretrained(tmp_path / "bf16", dtype="float32").dtype == torch.float32
    base = JanusAgent.from_base(base_dir, dtype=fast.dtype)
    assert base.dtype == torch.bfloat16 and not base.has_adapter
    # Both play whole, valid decisions; a tiny random model's choices may differ in bf16.
    observations = [_observation(Role.SELLER, standing=s) for s in (500.0, 800.0)]
    for player in (fast, base):
        actions = player.act_batch([player.seat(0.3)] * 2, observations)
        assert len(actions) == 2
        assert all(a.kind == "ACCEPT" or 0 <= a.price <= 2000 for a in actions)


# ------------------------------------------------------------------------------------ play


def test_play_a_whole_game_with_scripted_input(agent: JanusAgent) -> None:
    # The person (buyer) types garbage and an out-of-range price, opens with "Offer 600",
    # then accepts whatever Janus answers (if Janus has not accepted the 600 already).
    typed = io.StringIO("ten euros\n99999\nOffer 600\n" + "accept\n" * 20)
    out = io.StringIO()
    result = play_game(
        agent,
        rho=0.5,
        janus_role=Role.SELLER,
        input_stream=typed,
        output=out,
        seed=3,
        first_mover=Role.BUYER,
    )
    text = out.getvalue()
    assert "You are the buyer" in text
    assert "not understood: 'ten euros'" in text
    assert "public range [200, 1500]" in text
    assert "Janus (seller)" in text
    assert result.episode.outcome.agreement
    assert ("Deal at" in text) and ("Hidden reservations" in text)
    assert result.episode.steps[0].action.price == 600.0


def test_play_quit_and_end_of_input(agent: JanusAgent) -> None:
    for typed in ("quit\n", ""):
        with pytest.raises(PlayerQuit):
            play_game(
                agent,
                rho=0.5,
                janus_role=Role.SELLER,
                input_stream=io.StringIO(typed),
                output=io.StringIO(),
                first_mover=Role.BUYER,
            )


def test_play_refuses_accept_with_nothing_to_accept(agent: JanusAgent) -> None:
    out = io.StringIO()
    with pytest.raises(PlayerQuit):
        play_game(
            agent,
            rho=0.5,
            janus_role=Role.SELLER,
            input_stream=io.StringIO("accept\nquit\n"),
            output=out,
            first_mover=Role.BUYER,
        )
    assert "no offer to accept yet" in out.getvalue()


# ------------------------------------------------------------------ acceptance rules


def _seller_observation(turn: int, standing: float) -> Observation:
    """A seller (reservation 600) facing a buyer's standing offer, at ``turn`` of 20."""
    history = tuple(
        Offer(Role.SELLER if (turn - t) % 2 == 0 else Role.BUYER, 1000.0 - 10 * t, t)
        for t in range(1, turn - 1)
    )
    history = (*history, Offer(Role.BUYER, standing, turn - 1))
    return Observation(
        role=Role.SELLER,
        reservation=600.0,
        price_range=PriceRange(),
        turn=turn,
        max_turns=20,
        standing_offer=standing,
        history=history,
    )


def _norm(price: float) -> str:
    return f"OFFER {(price - 200) / 1300:.4f}"


def _price(norm: float) -> float:
    """The price the agent decodes from ``OFFER norm`` (4 decimals, exact)."""
    return PriceRange().denorm(norm)


@pytest.mark.parametrize(
    ("counter", "standing", "accepted"),
    [
        (_price(0.5), _price(0.55), True),  # the buyer already offers more than the counter
        (_price(0.55), _price(0.55), True),  # as good as the counter: take it
        (_price(0.6), _price(0.55), False),  # the counter asks for more: keep bargaining
    ],
)
def test_accept_better_takes_an_offer_at_least_as_good_as_the_counter(
    agent: JanusAgent, monkeypatch, counter: float, standing: float, accepted: bool
) -> None:
    monkeypatch.setattr(agent, "_decode", _Scripted([_norm(counter)]))
    monkeypatch.setattr(agent, "rules", ("accept_better",))
    seat = agent.seat(0.8)
    [action] = agent.act_batch([seat], [_seller_observation(6, standing)])
    assert action.is_accept is accepted
    assert seat.stats.rule_accept_better == int(accepted)
    if not accepted:
        assert action.price == pytest.approx(counter)


def test_accept_better_never_takes_an_offer_past_the_reservation(
    agent: JanusAgent, monkeypatch
) -> None:
    # The seller's counter is clamped up to its reservation 600; the buyer's 550 is
    # better than nothing for the buyer but below the seller's reservation: no deal.
    monkeypatch.setattr(agent, "_decode", _Scripted([_norm(400.0)]))
    seat = agent.seat(0.8)
    [action] = agent.act_batch([seat], [_seller_observation(6, 550.0)])
    assert not action.is_accept and action.price == 600.0
    assert seat.stats.rule_accepts == 0 and seat.stats.safety_clamped_offers == 1


@pytest.mark.parametrize(("turn", "accepted"), [(17, False), (18, False), (19, True), (20, True)])
def test_accept_last_turn_takes_a_deal_when_janus_has_no_later_turn(
    agent: JanusAgent, monkeypatch, turn: int, accepted: bool
) -> None:
    # The counter (1000) asks for more than the standing 700, so only the deadline rule
    # can accept; Janus's next turn would be turn + 2, past the 20-turn clock from 19 on.
    monkeypatch.setattr(agent, "_decode", _Scripted([_norm(1000.0)]))
    monkeypatch.setattr(agent, "rules", ("accept_last_turn",))
    seat = agent.seat(0.8)
    [action] = agent.act_batch([seat], [_seller_observation(turn, 700.0)])
    assert action.is_accept is accepted
    assert seat.stats.rule_accept_last_turn == int(accepted)


def test_no_rules_leave_every_counter_alone(agent: JanusAgent, monkeypatch) -> None:
    monkeypatch.setattr(agent, "_decode", _Scripted([_norm(850.0)]))
    monkeypatch.setattr(agent, "rules", ())
    seat = agent.seat(0.8)
    [action] = agent.act_batch([seat], [_seller_observation(20, 900.0)])
    assert action.price == pytest.approx(850.0) and seat.stats.rule_accepts == 0


def test_rules_are_checked_by_name() -> None:
    from janus.agent import DEFAULT_RULES, check_rules

    assert check_rules(None) == DEFAULT_RULES
    assert check_rules("none") == () and check_rules("") == ()
    assert check_rules("accept_last_turn, accept_better") == ("accept_last_turn", "accept_better")
    with pytest.raises(ValueError, match=r"unknown acceptance rule.*'accept_all'"):
        check_rules(["accept_all"])


@pytest.mark.parametrize(("turn", "accepted"), [(18, False), (19, False), (20, True)])
def test_accept_final_turn_takes_a_deal_only_when_no_counter_could_be_answered(
    agent: JanusAgent, monkeypatch, turn: int, accepted: bool
) -> None:
    monkeypatch.setattr(agent, "_decode", _Scripted([_norm(1000.0)]))
    monkeypatch.setattr(agent, "rules", ("accept_final_turn",))
    seat = agent.seat(0.8)
    [action] = agent.act_batch([seat], [_seller_observation(turn, 700.0)])
    assert action.is_accept is accepted
    assert seat.stats.rule_accept_final_turn == int(accepted) == seat.stats.rule_accepts


def test_accept_rules_are_exactly_the_rules_that_accept() -> None:
    """``ACCEPT_RULES`` (what ``rule_accepts`` sums) is every name ``acceptance_rule`` can
    return: each one accepts on some observation, and no other rule ever does."""
    from janus.rules import ACCEPT_RULES, RULE_NAMES, acceptance_rule

    returned = {
        acceptance_rule(_seller_observation(turn, standing), counter, RULE_NAMES[i:])
        for i in range(len(RULE_NAMES))
        for turn in (6, 19, 20)
        for standing in (650.0, 700.0)
        for counter in (680.0, 1000.0)
    }
    assert returned - {None} == set(ACCEPT_RULES)


def _stalled_seller(own: float, opponent: tuple[float, ...], reservation: float = 600.0):
    """Janus sells; the buyer opened, Janus answered ``own`` each time, the buyer's offers
    are ``opponent`` (oldest first); it is Janus's turn."""
    history = []
    for i, price in enumerate(opponent):
        history.append(Offer(Role.BUYER, price, 2 * i + 1))
        if i < len(opponent) - 1:
            history.append(Offer(Role.SELLER, own, 2 * i + 2))
    turn = 2 * len(opponent)
    return Observation(
        role=Role.SELLER,
        reservation=reservation,
        price_range=PriceRange(),
        turn=turn,
        max_turns=20,
        standing_offer=opponent[-1],
        history=tuple(history),
    )


@pytest.mark.parametrize(
    ("counter", "opponent", "expected"),
    [
        # The buyer conceded once (400 → 500) and then stood still, as Janus did: give a
        # tenth of the gap to its best offer, 1000 − 0.1 · (1000 − 500).
        (1000.0, (400.0, 500.0, 500.0), 950.0),
        # It stepped back to 450: its best is still 500, and it stalled.
        (1000.0, (400.0, 500.0, 450.0), 950.0),
        (1000.0, (400.0, 500.0, 550.0), None),  # it is still conceding: no stall
        (1000.0, (500.0, 500.0, 500.0), None),  # a hardliner never moved: no gifts
        (990.0, (400.0, 500.0, 500.0), None),  # the model conceded by itself
        (1010.0, (400.0, 500.0, 500.0), 950.0),  # a retreat is a stall too
        (1000.0, (400.0, 500.0), None),  # one opponent offer after its opening: too early
    ],
)
def test_stall_concession_on_hand_built_observations(
    counter: float, opponent: tuple[float, ...], expected: float | None
) -> None:
    from janus.agent import stall_concession

    observation = _stalled_seller(1000.0, opponent)
    got = stall_concession(observation, counter)
    assert got == (None if expected is None else pytest.approx(expected))


def test_stall_concession_never_crosses_the_reservation() -> None:
    from janus.agent import stall_concession

    # 605 − 0.1 · (605 − 500) = 594.5 would undercut the reservation 600: 600 instead.
    assert stall_concession(_stalled_seller(605.0, (400.0, 500.0, 500.0)), 605.0) == 600.0
    # Already at the reservation: nothing left to give.
    assert stall_concession(_stalled_seller(600.0, (400.0, 500.0, 500.0)), 600.0) is None


@pytest.mark.parametrize(
    ("counter", "opponent", "expected"),
    [
        # The buyer just conceded 480 → 510 and Janus would repeat 1000: give back half of
        # the buyer's step, 1000 − 0.5 · 30.
        (1000.0, (450.0, 480.0, 510.0), 985.0),
        (1010.0, (450.0, 480.0, 510.0), 985.0),  # a retreat is answered the same way
        (990.0, (450.0, 480.0, 510.0), None),  # the model conceded by itself
        (1000.0, (450.0, 510.0, 510.0), None),  # the buyer stood still: nothing to answer
        (1000.0, (450.0, 510.0, 480.0), None),  # it stepped back: no gift for that
        (1000.0, (450.0,), None),  # nothing to compare yet
    ],
)
def test_reciprocal_concession_on_hand_built_observations(
    counter: float, opponent: tuple[float, ...], expected: float | None
) -> None:
    from janus.agent import reciprocal_concession

    got = reciprocal_concession(_stalled_seller(1000.0, opponent), counter)
    assert got == (None if expected is None else pytest.approx(expected))


def test_reciprocal_concession_never_crosses_the_reservation() -> None:
    from janus.agent import reciprocal_concession

    # 610 − 0.5 · 100 = 560 would undercut the reservation 600: 600 instead.
    assert reciprocal_concession(_stalled_seller(610.0, (300.0, 400.0, 500.0)), 610.0) == 600.0
    assert reciprocal_concession(_stalled_seller(600.0, (300.0, 400.0, 500.0)), 600.0) is None


def test_reciprocate_rule_moves_the_counter_and_is_counted(agent: JanusAgent, monkeypatch) -> None:
    monkeypatch.setattr(agent, "_decode", _Scripted([_norm(1000.0)]))
    monkeypatch.setattr(agent, "rules", ("reciprocate",))
    seat = agent.seat(0.8)
    previous = _price(0.6154)
    [action] = agent.act_batch([seat], [_stalled_seller(previous, (450.0, 480.0, 510.0))])
    assert action.price == pytest.approx(previous - 0.5 * 30.0)
    assert seat.stats.rule_reciprocate == 1 and seat.stats.rule_accepts == 0


def test_concede_on_stall_rule_moves_the_counter_and_is_counted(
    agent: JanusAgent, monkeypatch
) -> None:
    monkeypatch.setattr(agent, "_decode", _Scripted([_norm(1000.0)]))
    monkeypatch.setattr(agent, "rules", ("concede_on_stall",))
    seat = agent.seat(0.8)
    observation = _stalled_seller(_price(0.6154), (400.0, 500.0, 500.0))
    [action] = agent.act_batch([seat], [observation])
    previous = _price(0.6154)
    assert action.price == pytest.approx(previous + 0.1 * (500.0 - previous))
    assert seat.stats.rule_concede_on_stall == 1 and seat.stats.rule_accepts == 0


@pytest.mark.parametrize(
    ("counter", "opponent", "expected"),
    [
        (1050.0, (400.0, 500.0, 550.0), 1000.0),  # asks more than Janus's own 1000: take-back
        (1000.0, (400.0, 500.0, 550.0), None),  # a repeat withdraws nothing
        (950.0, (400.0, 500.0, 550.0), None),  # a concession is left alone
        (1050.0, (400.0,), None),  # Janus has not offered yet: nothing to take back
    ],
)
def test_no_retreat_on_hand_built_observations(
    counter: float, opponent: tuple[float, ...], expected: float | None
) -> None:
    from janus.agent import no_retreat

    assert no_retreat(_stalled_seller(1000.0, opponent), counter) == expected


def test_no_retreat_rule_moves_the_counter_and_is_counted(agent: JanusAgent, monkeypatch) -> None:
    monkeypatch.setattr(agent, "_decode", _Scripted([_norm(1050.0)]))
    monkeypatch.setattr(agent, "rules", ("no_retreat",))
    seat = agent.seat(0.8)
    previous = _price(0.6154)
    [action] = agent.act_batch([seat], [_stalled_seller(previous, (400.0, 500.0, 550.0))])
    assert action.price == previous
    assert seat.stats.rule_no_retreat == 1 and seat.stats.rule_accepts == 0


class _Recording(_Scripted):
    """Records the gate ρ and the prompt text of every decoded row."""

    def __init__(self, agent: JanusAgent, first: list[str]) -> None:
        super().__init__(first)
        self.tokenizer = agent.tokenizer
        self.gates: list[float] = []
        self.texts: list[str] = []

    def __call__(self, gate_rhos, prompts, offer_only=None):
        self.gates.extend(gate_rhos)
        self.texts.extend(self.tokenizer.decode(p) for p in prompts)
        return super().__call__(gate_rhos, prompts, offer_only)


@pytest.mark.parametrize("rules", [(), ("firm_opening",)])
def test_firm_opening_decides_only_the_first_move_at_the_firm_end(
    agent: JanusAgent, monkeypatch, rules: tuple[str, ...]
) -> None:
    # Three seats: a seller's opening answer (it has not offered yet), a buyer's opening
    # with nothing on the table, and a seller that offered before (left alone).
    fake = _Recording(agent, [_norm(900.0)] * 3)
    monkeypatch.setattr(agent, "_decode", fake)
    monkeypatch.setattr(agent, "rules", rules)
    seats = [agent.seat(0.3), agent.seat(0.7), agent.seat(0.3)]
    buyer_opening = Observation(Role.BUYER, 800.0, PriceRange(), 1, 20, None, ())
    observations = [
        _stalled_seller(1000.0, (400.0,)),
        buyer_opening,
        _stalled_seller(1000.0, (400.0, 500.0)),
    ]
    agent.act_batch(seats, observations)
    firm = bool(rules)
    assert fake.gates == ([1.0, 0.0, 0.3] if firm else [0.3, 0.7, 0.3])
    shown = ["<RHO> 1.00", "<RHO> 0.00", "<RHO> 0.30"] if firm else ["<RHO> 0.30", "<RHO> 0.70"]
    assert all(any(line in text for text in fake.texts) for line in shown)
    assert [s.stats.rule_firm_opening for s in seats] == ([1, 1, 0] if firm else [0, 0, 0])


def test_firm_opening_leaves_an_ablated_channel_fixed(agent: JanusAgent, monkeypatch) -> None:
    fake = _Recording(agent, [_norm(900.0)])
    monkeypatch.setattr(agent, "_decode", fake)
    monkeypatch.setattr(agent, "rules", ("firm_opening",))
    seat = agent.seat(0.3, channels="text", fixed_rho=0.5)
    agent.act_batch([seat], [_stalled_seller(1000.0, (400.0,))])
    assert fake.gates == [0.5] and "<RHO> 1.00" in fake.texts[0]


def test_every_rule_has_its_counter_on_seats_records_reports_and_summaries() -> None:
    from dataclasses import fields

    from janus.agent import SeatStats
    from janus.evaluation.harness import EpisodeRecord
    from janus.evaluation.report import CSV_COLUMNS
    from janus.evaluation.summary_types import Habits
    from janus.rules import ACCEPTANCE_RULES, RULE_COUNTERS

    assert tuple(f"rule_{name}" for name in ACCEPTANCE_RULES) == RULE_COUNTERS
    for declared in (SeatStats, EpisodeRecord, Habits):
        names = [f.name for f in fields(declared) if f.name.startswith("rule_")]
        assert tuple(names) == RULE_COUNTERS, declared.__name__
    assert tuple(c for c in CSV_COLUMNS if c.startswith("rule_")) == RULE_COUNTERS


@pytest.mark.parametrize(
    ("counter", "opponent", "expected"),
    [
        (1000.0, (400.0, 500.0, 450.0), 1000.0 + FRESH_STEP * (500.0 - 1000.0)),  # a repeat moves
        (1050.0, (400.0, 500.0, 450.0), 1000.0 + FRESH_STEP * (500.0 - 1000.0)),  # a retreat too
        (990.0, (400.0, 500.0, 450.0), None),  # the model conceded by itself
        (1000.0, (400.0, 400.0, 390.0), None),  # an opponent that never conceded gets nothing
    ],
)
def test_fresh_concession_on_hand_built_observations(
    counter: float, opponent: tuple[float, ...], expected: float | None
) -> None:
    from janus.agent import fresh_concession

    got = fresh_concession(_stalled_seller(1000.0, opponent), counter)
    assert got == (None if expected is None else pytest.approx(expected))


def test_fresh_concession_never_crosses_the_reservation_and_needs_history() -> None:
    from janus.agent import fresh_concession

    # 601 − FRESH_STEP · (601 − 310) would undercut the reservation 600: 600 instead.
    assert fresh_concession(_stalled_seller(601.0, (300.0, 310.0)), 601.0) == 600.0
    assert fresh_concession(_stalled_seller(600.0, (300.0, 310.0)), 600.0) is None
    assert fresh_concession(_stalled_seller(1000.0, (450.0,)), 1000.0) is None  # no own offer


def test_fresh_offer_rule_moves_the_counter_and_is_counted(agent: JanusAgent, monkeypatch) -> None:
    monkeypatch.setattr(agent, "_decode", _Scripted([_norm(1000.0)]))
    monkeypatch.setattr(agent, "rules", ("fresh_offer",))
    seat = agent.seat(0.8)
    previous = _price(0.6154)
    [action] = agent.act_batch([seat], [_stalled_seller(previous, (400.0, 500.0, 450.0))])
    assert action.price == pytest.approx(previous + FRESH_STEP * (500.0 - previous))
    assert seat.stats.rule_fresh_offer == 1 and seat.stats.rule_accepts == 0


def test_dtype_auto_plays_the_dtype_the_map_was_swept_with(tmp_path: Path) -> None:
    from janus.calibration import fit_calibration_map

    model, tokenizer = _model_and_tokenizer(seed=5)
    base_dir = tmp_path / "base"
    build_model("tiny", build_tokenizer(), seed=5).save_pretrained(base_dir)
    build_tokenizer().save_pretrained(base_dir)
    adapter = tmp_path / "adapter"
    save_hyperlora_adapter(model, tokenizer, adapter, base_model_name_or_path=base_dir)
    grid = (0.0, 0.5, 1.0)
    rows = [(role, g, 0.2 + 0.6 * g) for role in ("buyer", "seller") for g in grid]

    def swept_with(dtype: str) -> None:
        details = {"rules": [], "price_decoding": "greedy", "dtype": dtype}
        fit_calibration_map(rows, grid, opponents=["linear"], seed=0, details=details).save(adapter)

    swept_with("bfloat16")
    assert JanusAgent.from_pretrained(adapter, rules="none").dtype == torch.bfloat16
    # The raw dial has no map to follow: it plays the training dtype.
    assert JanusAgent.from_pretrained(adapter, raw=True).dtype == torch.float32
    with pytest.warns(UserWarning, match="swept with a bfloat16 base; this agent plays float32"):
        JanusAgent.from_pretrained(adapter, rules="none", dtype="float32")
    swept_with("float8")
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        JanusAgent.from_pretrained(adapter, rules="none")


def test_native_bf16_reads_the_cpu_flags(tmp_path: Path) -> None:
    from janus.runtime import native_bf16

    def cpu(flags: str) -> str:
        path = tmp_path / f"cpuinfo-{len(flags)}"
        path.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        return str(path)

    assert native_bf16(cpuinfo=cpu("fpu sse avx2 avx512f avx512_bf16"))
    assert native_bf16(cpuinfo=cpu("fpu avx512f amx_bf16 amx_tile"))
    assert not native_bf16(cpuinfo=cpu("fpu sse avx2 avx512f avx512bw"))
    assert not native_bf16(cpuinfo=str(tmp_path / "missing"))
    assert not native_bf16("mps")
