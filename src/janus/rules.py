"""The agent's named rules: when to take the deal on the table, and when to concede.

A policy cloned from many scripts does not learn the one thing every script does near the
deadline (take the deal), and repeats its offer where reciprocating opponents wait for a
move. These rules sit between the model's decoded counter and the action sent; each is an
option of :class:`janus.agent.JanusAgent` with a name (``--rules``), on by default only where
it measured better on in-pool opponents (benchmarks/RESULTS.md), and counted on the seat.

Acceptance rules only ever turn a counter into an ACCEPT of a standing offer inside the
reservation:

- ``accept_better`` (AC-next in the negotiation literature): the standing offer is at least as
  good for Janus as the counter it was about to make. Countering worse than what is on the
  table gives surplus away for nothing.
- ``accept_last_turn`` (AC-last): Janus has no later turn; a deal inside the reservation beats
  the impasse that a counter risks.
- ``accept_final_turn`` (off by default): the narrower AC-last, only when no counter could be
  answered at all; at the turn before, Janus then counters and risks the opponent's refusal.

Rules that move a counter instead: ``no_retreat`` (:func:`no_retreat`, off by default),
``concede_on_stall`` (:func:`stall_concession`), ``reciprocate``
(:func:`reciprocal_concession`, off by default) and ``fresh_offer``
(:func:`fresh_concession`). One rule changes what the model is asked:
``firm_opening`` (off by default) decodes Janus's first decision of an episode at the firm end
of the dial (ρ 0 as buyer, 1 as seller; :func:`opening_rho`). A cloned dial reaches the middle
of its range as a mixture: some episodes open at the reservation and are taken at once, others
hold firm; these two rules ask for the shape every time-based negotiator has instead, an
ambitious opening and concessions that are never taken back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from janus.domain import Observation, Role

#: The acceptance rules an agent can apply, and what each one does (for ``--help``).
ACCEPTANCE_RULES: dict[str, str] = {
    "accept_better": "accept a standing offer at least as good as Janus's own counter",
    "accept_last_turn": "at Janus's last turn, accept any standing offer inside the reservation",
    "accept_final_turn": "on the episode's final turn (no counter could be answered), accept "
    "any standing offer inside the reservation",
    "concede_on_stall": "when both sides repeat themselves, move Janus's counter a step toward "
    "the opponent's best offer",
    "reciprocate": "when the opponent has just conceded and Janus would not, concede a share "
    "of the opponent's step",
    "no_retreat": "never take a concession back: a counter better for Janus than its previous "
    "offer becomes that offer again",
    "fresh_offer": "keep moving: a counter that concedes nothing against Janus's previous "
    "offer moves a small step toward the opponent's best offer (not against an opponent that "
    "never conceded)",
    "firm_opening": "decide Janus's first move at the firm end of the dial (rho 0 as buyer, 1 "
    "as seller), then play the requested rho",
}
#: Every rule, in the order its counter (``rule_<name>``) appears on seats, records and reports.
RULE_NAMES: tuple[str, ...] = tuple(ACCEPTANCE_RULES)
RULE_COUNTERS: tuple[str, ...] = tuple(f"rule_{name}" for name in RULE_NAMES)
#: The rules that turn a counter into an ACCEPT (:func:`acceptance_rule`), by their prefix.
ACCEPT_RULES: tuple[str, ...] = tuple(name for name in RULE_NAMES if name.startswith("accept_"))


def rule_total(counters: object, names: Iterable[str]) -> int:
    """The sum of the ``rule_<name>`` counters of ``names`` on ``counters`` (a seat's stats,
    an episode record, a habits block: each declares one counter per rule)."""
    return sum(getattr(counters, f"rule_{name}") for name in names)


#: The share of the gap to the opponent's best offer that ``concede_on_stall`` gives up.
STALL_STEP = 0.1
#: The share of the opponent's latest concession that ``reciprocate`` gives back.
RECIPROCATE_SHARE = 0.5
#: The share of the gap to the opponent's best offer that ``fresh_offer`` gives up per turn.
FRESH_STEP = 0.005
#: On by default: each measured better than without it on in-pool opponents, paired episodes
#: (benchmarks/RESULTS.md); ``accept_final_turn``, ``reciprocate``, ``no_retreat`` and
#: ``firm_opening`` measured worse and stay off; ``fresh_offer`` measured no better in-pool.
DEFAULT_RULES: tuple[str, ...] = ("accept_better", "accept_last_turn", "concede_on_stall")


def check_rules(rules: Sequence[str] | str | None) -> tuple[str, ...]:
    """Rule names from a sequence or a comma string (``""``/``"none"``: no rule)."""
    if rules is None:
        return DEFAULT_RULES
    if isinstance(rules, str):
        rules = [] if rules.strip().lower() == "none" else rules.split(",")
    names = tuple(dict.fromkeys(r.strip() for r in rules if r.strip()))
    unknown = [n for n in names if n not in ACCEPTANCE_RULES]
    if unknown:
        raise ValueError(
            f"unknown acceptance rule(s) {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(ACCEPTANCE_RULES)} (or none)"
        )
    return names


def acceptance_rule(observation: Observation, counter: float, rules: Sequence[str]) -> str | None:
    """The first acceptance rule that turns ``counter`` into an ACCEPT, if any."""
    standing = observation.standing_offer
    if not rules or standing is None or not observation.is_acceptable(standing):
        return None
    if "accept_better" in rules and observation.better_or_equal(standing, counter):
        return "accept_better"
    last_turn = observation.turn + 2 > observation.max_turns
    if "accept_last_turn" in rules and last_turn:
        return "accept_last_turn"
    if "accept_final_turn" in rules and observation.turn >= observation.max_turns:
        return "accept_final_turn"
    return None


def stall_concession(observation: Observation, counter: float) -> float | None:
    """The counter ``concede_on_stall`` makes instead of ``counter``, or ``None`` to keep it.

    A stall is two repeats in a row: Janus's counter concedes nothing against its own previous
    offer, and the opponent's latest offer is no better for Janus than its best one before.
    Opponents that reciprocate (tit-for-tat) or answer only new offers (MiCRO) then never move,
    and the game ends in an impasse nobody wanted. The rule gives up :data:`STALL_STEP` of the
    gap between Janus's previous offer and the opponent's best offer, never past the
    reservation, and only to an opponent that has conceded before: one that never moved
    (a hardliner) is waiting for gifts, not for reciprocity. Time-based opponents, which
    concede on their own, never trigger it.
    """
    previous = _held_position(observation, counter)
    if previous is None:
        return None
    opp = observation.opponent_offers
    best_before = _best_offer(observation, opp[:-1])
    if not observation.better_or_equal(best_before, opp[-1]):
        return None  # the opponent moved: no stall
    if observation.better_or_equal(opp[0], best_before):
        return None  # it never conceded: a hardliner is not answered with gifts
    return _conceded(observation, previous, previous + STALL_STEP * (best_before - previous))


def reciprocal_concession(observation: Observation, counter: float) -> float | None:
    """The counter ``reciprocate`` makes instead of ``counter``, or ``None`` to keep it.

    A cloned policy at a firm setting repeats its offer while the other side concedes turn
    after turn: a person meets a wall, and an opponent that mirrors concessions stops moving.
    When the opponent's latest offer is better for Janus than its one before, and ``counter``
    concedes nothing against Janus's previous offer, the rule concedes
    :data:`RECIPROCATE_SHARE` of the opponent's step instead, never past the reservation.
    """
    previous = _held_position(observation, counter)
    if previous is None:
        return None
    opp = observation.opponent_offers
    step = opp[-1] - opp[-2]
    if step == 0 or not observation.better_or_equal(opp[-1], opp[-2]):
        return None  # the opponent did not concede
    # toward the opponent, i.e. against the direction of its step
    return _conceded(observation, previous, previous - RECIPROCATE_SHARE * step)


def no_retreat(observation: Observation, counter: float) -> float | None:
    """Janus's previous offer when ``counter`` takes back part of it, else ``None``.

    A counter better for Janus than its own previous offer withdraws a concession: opponents
    that mirror concessions read it as hardening, and a person reads it as bad faith. The
    rule repeats the previous offer instead (which ``concede_on_stall`` may then move).
    """
    own = observation.own_offers
    if not own or counter == own[-1] or not observation.better_or_equal(counter, own[-1]):
        return None
    return own[-1]


def opening_rho(observation: Observation, rules: Sequence[str]) -> float | None:
    """The dial value ``firm_opening`` decides Janus's first move at, or ``None`` (no rule,
    or Janus has moved before): the firm end for Janus's side, 0 as buyer and 1 as seller."""
    if "firm_opening" not in rules or observation.own_offers:
        return None
    return 0.0 if observation.role is Role.BUYER else 1.0


def fresh_concession(observation: Observation, counter: float) -> float | None:
    """The counter ``fresh_offer`` makes instead of ``counter``, or ``None`` to keep it.

    At a firm setting a cloned dial holds one price turn after turn and takes the opponent's
    standing offer at its last turn. Against opponents that concede only to new offers
    (MiCRO counts the distinct offers it has received) or mirror concessions (tit-for-tat)
    that is the worst of both: the opponent never moves, and Janus capitulates at the
    deadline to the opponent's opening. Every time-based negotiator, even the most
    boulware, makes a new offer each turn. When ``counter`` concedes nothing against Janus's
    previous offer, the rule concedes :data:`FRESH_STEP` of the gap between that offer and
    the opponent's best offer, never past the reservation. Unlike ``concede_on_stall`` it
    does not wait for the opponent to stall first; like it, it gives nothing to an opponent
    that has never conceded (a hardliner waits for gifts, and adaptive negotiators such as
    ChargingBoul concede to a side that does not move).
    """
    own, opp = observation.own_offers, observation.opponent_offers
    if not own or not opp:
        return None
    previous = own[-1]
    if not observation.better_or_equal(counter, previous):
        return None  # the model conceded by itself
    best = _best_offer(observation, opp)
    if best == opp[0]:
        return None  # it never conceded
    return _conceded(observation, previous, previous + FRESH_STEP * (best - previous))


#: The rules that move a counter, in the order the agent applies them (after the safety
#: clamp, before the acceptance rules); each is counted as ``rule_<name>`` on the seat.
COUNTER_RULES: dict[str, Callable[[Observation, float], float | None]] = {
    "no_retreat": no_retreat,
    "concede_on_stall": stall_concession,
    "reciprocate": reciprocal_concession,
    "fresh_offer": fresh_concession,
}


def _held_position(observation: Observation, counter: float) -> float | None:
    """Janus's previous offer, when ``counter`` concedes nothing against it and the opponent
    has made two offers to compare; else ``None`` (the model conceded by itself, or too early)."""
    own = observation.own_offers
    if not own or len(observation.opponent_offers) < 2:
        return None
    previous = own[-1]
    return previous if observation.better_or_equal(counter, previous) else None


def _best_offer(observation: Observation, prices: Sequence[float]) -> float:
    """The price in ``prices`` (non-empty) that is best for Janus's side."""
    return min(prices) if observation.role is Role.BUYER else max(prices)


def _conceded(observation: Observation, previous: float, price: float) -> float | None:
    """``price`` kept inside the reservation, or ``None`` when that concedes nothing (Janus
    is already at its reservation)."""
    if not observation.is_acceptable(price):
        price = observation.reservation
    return None if observation.better_or_equal(price, previous) else price
