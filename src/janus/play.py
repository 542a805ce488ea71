"""``janus play``: a person haggles with Janus in the terminal.

The person is just another :class:`janus.episode.Negotiator` — one that reads its moves from a
text stream — so a game in the terminal runs through the same episode loop as generation and
evaluation, with the same rules and validation. Input and output streams are parameters,
which is how the tests drive a whole game with scripted input.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TextIO

from janus.domain import Action, DomainConfig, Observation, Role, sample_scenario
from janus.episode import EpisodeResult, Match, run_episode

HELP = (
    "type a price (e.g. 742.50 or 'offer 742.50') to make an offer, 'accept' to take the "
    "standing offer, 'quit'"
)


class PlayerQuit(Exception):
    """The person typed 'quit' or closed the input."""


class HumanNegotiator:
    """A seat played by a person at a terminal; re-asks until the move is valid."""

    strict = True

    def __init__(self, input_stream: TextIO, output: TextIO, name: str = "you") -> None:
        self.name = name
        self.input = input_stream
        self.output = output

    def _say(self, text: str) -> None:
        self.output.write(text + "\n")
        self.output.flush()

    def act(self, observation: Observation) -> Action:
        pr = observation.price_range
        standing = observation.standing_offer
        self._say(
            f"turn {observation.turn}/{observation.max_turns} — your reservation "
            f"{observation.reservation:.2f}; "
            + (f"standing offer {standing:.2f}" if standing is not None else "no offer yet")
        )
        while True:
            self.output.write("> ")
            self.output.flush()
            line = self.input.readline()
            if not line:
                raise PlayerQuit
            text = line.strip().lower()
            if text in ("quit", "exit", "q"):
                raise PlayerQuit
            if text in ("accept", "a"):
                if standing is None:
                    self._say("there is no offer to accept yet; make an offer")
                    continue
                return Action.accept()
            text = text.removeprefix("offer").strip()  # the model's own words work too
            try:
                price = float(text.replace(",", ""))
            except ValueError:
                self._say(f"not understood: {line.strip()!r}; {HELP}")
                continue
            if not math.isfinite(price) or not pr.contains(price):
                self._say(f"a price must lie in the public range [{pr.low:g}, {pr.high:g}]")
                continue
            return Action.offer(price)


class _Announcer:
    """Wraps Janus's seat to print each of its moves as it makes them."""

    def __init__(self, seat, output: TextIO) -> None:
        self.seat = seat
        self.name = seat.name
        self.strict = seat.strict
        self.output = output

    def act(self, observation: Observation) -> Action:
        action = self.seat.act(observation)
        text = "accepts" if action.is_accept else f"offers {action.price:.2f}"
        self.output.write(f"Janus ({observation.role.value}) {text}\n")
        self.output.flush()
        return action


@dataclass(frozen=True)
class PlayResult:
    episode: EpisodeResult
    human_role: Role


def dial_line(agent, seat, janus_role: Role) -> str:
    """How the request reaches the dial: through the calibration map or raw, and whether
    the request lies outside what the dial can reach (said, never silently clipped)."""
    calibration = getattr(agent, "calibration", None)
    if calibration is None or getattr(seat, "calibration", None) is None:
        return f"(raw dial: rho {seat.rho:.2f} goes to the model as is)"
    low, high = calibration.reachable(janus_role.value)
    line = (
        f"(calibrated dial: to land at rho {seat.rho:.2f} the model is set to "
        f"{seat.dial_rho:.2f}; as {janus_role.value} it reaches {low:.2f}..{high:.2f})"
    )
    if seat.stats.outside_reachable:
        line += f"\nnote: rho {seat.rho:.2f} is outside that range; Janus aims at the nearest end"
    return line


def play_game(
    agent,
    *,
    rho: float,
    janus_role: Role,
    input_stream: TextIO,
    output: TextIO,
    seed: int = 0,
    first_mover: Role | None = None,
    config: DomainConfig | None = None,
) -> PlayResult:
    """Play one episode: Janus at ``rho`` in ``janus_role`` against the person."""
    rng = random.Random(seed)
    mover = first_mover or (Role.BUYER if rng.random() < 0.5 else Role.SELLER)
    scenario = sample_scenario(config or DomainConfig(), rng, mover)
    human_role = janus_role.opponent
    human = HumanNegotiator(input_stream, output)
    seat = agent.seat(rho, role=janus_role.value)
    janus = _Announcer(seat, output)
    output.write(
        f"You are the {human_role.value}; your reservation is "
        f"{scenario.reservation(human_role):.2f} (never go past it). Janus plays the "
        f"{janus_role.value} at rho={rho:.2f}. {mover.value} moves first; "
        f"{scenario.max_turns} turns at most.\n{HELP}\n"
    )
    output.write(dial_line(agent, seat, janus_role) + "\n")
    buyer, seller = (janus, human) if janus_role is Role.BUYER else (human, janus)
    episode = run_episode(Match(buyer, seller, scenario, seed=seed))
    outcome = episode.outcome
    if outcome.agreement:
        output.write(
            f"Deal at {outcome.final_price:.2f} after {outcome.turns} turns: rho = "
            f"{outcome.rho:.3f} (Janus was asked for {rho:.2f}); your utility "
            f"{outcome.utility(human_role):.3f}.\n"
        )
    else:
        output.write(f"No deal after {outcome.turns} turns (impasse).\n")
    output.write(
        f"Hidden reservations: buyer {scenario.buyer_max:.2f}, seller {scenario.seller_min:.2f}.\n"
    )
    return PlayResult(episode, human_role)
