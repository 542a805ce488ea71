"""The base of every scripted strategy: what it may see, and the one rational rule it ends in.

The conventions shared by the whole pool (anchors, the time-dependent exponent, rationality,
state in the agent) are in :mod:`janus.strategies`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from janus.domain import Action, Observation, Role

ParamValue = float | int | str

FAMILIES = ("time-dependent", "noisy", "reciprocal", "firm", "adaptive", "fair", "naive", "random")

_ACCEPT = Action.accept()  # frozen: safe to share


# --------------------------------------------------------------------------------------------
# Base class
# --------------------------------------------------------------------------------------------


class Strategy:
    """A scripted negotiator for one seat of one episode.

    Subclasses implement :meth:`decide`. Before it is called, the base class has recorded the
    side's constants (``role``, ``R``, ``sign``, ``lo``/``hi``: the prices it may offer,
    ``width``, ``anchor``) and split the new offers of the history into ``own`` and ``opp``.

    ``sign`` is +1 for the buyer and −1 for the seller: a price p is at least as good as q for
    this side iff ``sign·p <= sign·q``, and conceding moves ``sign·price`` up.
    """

    name: str
    strict = True
    family: ClassVar[str] = ""
    #: whether it has an anchor S = R ∓ margin·w (then it takes ``margin`` and ``margin_spread``)
    uses_anchor: ClassVar[bool] = True

    def __init__(self, name: str, seed: int, params: Mapping[str, Any]) -> None:
        self.name = name
        self.seed = seed
        self.params: Mapping[str, Any] = MappingProxyType(dict(params))
        self.rng = random.Random(seed)
        self.role: Role | None = None
        self.own: list[float] = []
        self.opp: list[float] = []
        self._seen = 0
        self._turn = 0
        self._configure()

    def __repr__(self) -> str:
        cls = type(self).__name__
        return f"{cls}(name={self.name!r}, seed={self.seed}, params={dict(self.params)})"

    # -- hooks ----------------------------------------------------------------------------------
    def _configure(self) -> None:
        """Read ``self.params`` into attributes (called once, at construction)."""

    def _setup(self, obs: Observation) -> None:
        """Role-dependent precomputation (called once, at the first decision)."""

    def decide(self, obs: Observation) -> Action:
        raise NotImplementedError

    # -- the Negotiator contract ----------------------------------------------------------------
    def act(self, observation: Observation) -> Action:
        obs = observation
        if self.role is None:
            self._start(obs)
        elif obs.role is not self.role or obs.turn <= self._turn or len(obs.history) < self._seen:
            raise RuntimeError(
                f"strategy {self.name!r} plays one seat of one episode; "
                "create a fresh agent with create_strategy() for every episode and seat"
            )
        self._turn = obs.turn
        history = obs.history
        if len(history) > self._seen:
            role = self.role
            own, opp = self.own, self.opp
            for offer in history[self._seen :]:
                (own if offer.role is role else opp).append(offer.price)
            self._seen = len(history)
        return self.decide(obs)

    def _start(self, obs: Observation) -> None:
        self.role = obs.role
        pr = obs.price_range
        self.R = r = obs.reservation
        self.width = pr.width
        if obs.role is Role.BUYER:
            self.sign = 1.0
            self.lo, self.hi = pr.low, min(r, pr.high)
        else:
            self.sign = -1.0
            self.lo, self.hi = max(r, pr.low), pr.high
        if self.uses_anchor:
            margin = float(self.params["margin"])
            spread = float(self.params.get("margin_spread", 0.0))
            if spread > 0.0:
                margin = min(max(margin + self.rng.uniform(-spread, spread), 0.0), 1.0)
            self.margin = margin
            self.anchor = pr.clip(r - self.sign * margin * pr.width)
        else:
            self.margin = 0.0
            self.anchor = r
        self._setup(obs)

    # -- shared helpers -------------------------------------------------------------------------
    def clamp(self, price: float) -> float:
        """The price as offered: kept no worse than R and inside the range, rounded to 2 dp."""
        lo, hi = self.lo, self.hi
        p = lo if price < lo else hi if price > hi else price
        r = round(p, 2)
        return r if lo <= r <= hi else p

    def acceptable(self, price: float) -> bool:
        """Whether a price is no worse than this side's reservation."""
        return self.sign * (price - self.R) <= 0.0

    def better_or_equal(self, price: float, than: float) -> bool:
        """Whether ``price`` is at least as good as ``than`` for this side."""
        return self.sign * (price - than) <= 0.0

    def should_accept(self, obs: Observation, threshold: float) -> bool:
        """Accept iff the standing offer is no worse than R and at least as good as the
        threshold; on the very last turn, iff it is no worse than R."""
        o = obs.standing_offer
        if o is None or self.sign * (o - self.R) > 0.0:
            return False
        return self.sign * (o - threshold) <= 0.0 or obs.turn >= obs.max_turns

    def respond(self, obs: Observation, target: float, accept_at: float | None = None) -> Action:
        """The shared rational rule: accept if the standing offer is acceptable and at least as
        good as ``accept_at`` (default: the clamped target), else offer the clamped target."""
        price = self.clamp(target)
        if self.should_accept(obs, price if accept_at is None else accept_at):
            return _ACCEPT
        return Action.offer(price)

    def toward(self, fraction: float) -> float:
        """The price ``fraction`` of the way from the anchor to R (0 = anchor, 1 = R)."""
        return self.anchor + (self.R - self.anchor) * fraction

    def best_received(self) -> float | None:
        """The opponent's offer that is best for this side so far."""
        if not self.opp:
            return None
        return min(self.opp) if self.sign > 0 else max(self.opp)
