"""The scripted strategy pool: a registry of (name, family, description, parameters, policy).

Every strategy is a :class:`Strategy`, which satisfies :class:`janus.episode.Negotiator`. A
strategy sees only what its side may know, all of it carried by the
:class:`~janus.domain.Observation`: its own reservation R, the public price range, the offer
history and the clock. None reads the opponent's reservation or the ZOPA width W.

Conventions shared by the whole pool
------------------------------------
- ``w`` is the width of the public price range (1300 with the defaults). Every price-sized
  parameter (margins, steps, noise, windows) is a *fraction of w*, so a pool tuned for the
  default range keeps its shape on any other range.
- **Anchor.** The research code anchored 21 of its 23 strategies on Ô, the opponent's exact
  reservation, rebuilt from a ZOPA width fixed at 500. Here the default anchor is
  ``S = R ∓ margin·w`` (buyer: below R, seller: above R), clipped to the public range: a
  fraction of the public range, i.e. the agent's *own guess* of how much room there is, never
  the opponent's secret. The margin is drawn once per agent from
  ``U(margin − margin_spread, margin + margin_spread)`` with the agent's seeded generator, so an
  opening offer does not give the opponent's reservation away exactly either (with one fixed
  margin for the whole pool, R = first offer ± margin·w would be the reverse of the research
  code's leak). Strategies that do something else say so in their docstring
  (Fair uses the opening offers of both sides, split-the-difference and tit-for-tat follow the
  opponent's offers once seen, the naive agents and the random agent start at R itself).
- **Time-dependent exponent (Faratin et al., 1998).** ``target(t) = S + (R − S)·(t/T)^(1/e)``,
  with t the 1-based turn and T the maximum number of turns. ``e < 1`` is Boulware (holds
  firm, concedes late), ``e = 1`` is linear, ``e > 1`` is Conceder (concedes early). The
  target reaches R exactly at t = T. (The research code wrote the exponent the other way round,
  ``τ^β``, so its β = 0.2 "very conceding" is our e = 5.)
- **Rational by construction.** Every policy ends in :meth:`Strategy.respond`: accept the
  standing offer if it is no worse than R and at least as good as the acceptance threshold
  (by default the price the strategy would offer), otherwise offer the target clamped to R and
  to the public range. On the very last turn an offer could never be answered, so every
  strategy accepts any standing offer no worse than R there (an impasse is worth nothing to
  either side). Offers are rounded to 2 dp without ever crossing R or leaving the range.
- **State lives in the agent** (docs/ARCHITECTURE.md, defect 11): an agent object plays one
  seat of one episode. :func:`create_strategy` builds a fresh one, seeded with
  ``random.Random(seed)``; reusing an agent for another episode or the other seat raises.
  There is no module-level mutable state.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from janus.domain import Action, Observation, Role

__all__ = [
    "FAMILIES",
    "REGISTRY",
    "Strategy",
    "StrategySpec",
    "create_strategy",
    "describe",
    "evaluation_pool",
    "held_out_pool",
    "training_pool",
]

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


# --------------------------------------------------------------------------------------------
# Time-dependent and noisy
# --------------------------------------------------------------------------------------------


class TimeDependent(Strategy):
    """Faratin's time-dependent tactic: target = S + (R − S)·(t/T)^(1/e); S = R ∓ margin·w."""

    family = "time-dependent"

    def _configure(self) -> None:
        self.inv_e = 1.0 / float(self.params["e"])

    def target(self, obs: Observation) -> float:
        return self.toward((obs.turn / obs.max_turns) ** self.inv_e)

    def decide(self, obs: Observation) -> Action:
        return self.respond(obs, self.target(obs))


class NoisyTimeDependent(TimeDependent):
    """The time-dependent tactic with uniform noise of at most ``noise·w`` on its offers.

    Acceptance uses the noise-free target (as in the research code); the noisy offer is then
    clamped like any other, so it never crosses R nor leaves the range.
    """

    family = "noisy"

    def _configure(self) -> None:
        super()._configure()
        self.noise = float(self.params["noise"])

    def decide(self, obs: Observation) -> Action:
        target = self.target(obs)
        if self.should_accept(obs, self.clamp(target)):
            return _ACCEPT
        a = self.noise * self.width
        return Action.offer(self.clamp(target + self.rng.uniform(-a, a)))


# --------------------------------------------------------------------------------------------
# Reciprocal
# --------------------------------------------------------------------------------------------


class RelativeTitForTat(Strategy):
    """Faratin's relative tit-for-tat (δ = 1): reproduce, in percentage terms, the opponent's
    last concession: next = own_last · (o₋₂ / o₋₁), times ``factor`` (1 = exact mirror).

    It opens at its anchor S = R ∓ margin·w. With a single opponent offer seen it makes one
    goodwill concession of ``gesture·w`` (otherwise two tit-for-tat agents would wait for each
    other forever). It never retreats: an opponent's step back is mirrored as no move.
    Percentages of raw prices are Faratin's definition; since a buyer's prices are lower than a
    seller's, the same percentage is a smaller step for the buyer, which favours the buyer side.
    """

    family = "reciprocal"

    def _configure(self) -> None:
        self.gesture = float(self.params["gesture"])
        self.factor = float(self.params["factor"])

    def decide(self, obs: Observation) -> Action:
        own, opp = self.own, self.opp
        if not own:
            target = self.anchor
        elif len(opp) < 2:
            target = own[-1] + self.sign * self.gesture * self.width if opp else own[-1]
        else:
            last = own[-1]
            prev_o, last_o = opp[-2], opp[-1]
            if prev_o > 0 and last_o > 0:
                mirrored = last * (prev_o / last_o) - last
            else:  # non-positive prices (a custom range): mirror the absolute step instead
                mirrored = self.sign * (prev_o - last_o)
            step = self.sign * mirrored
            target = last + self.sign * self.factor * step if step > 0 else last
        return self.respond(obs, target)


class SplitDifference(Strategy):
    """Offer the midpoint of its own last offer and the opponent's last offer.

    Its first offer is the midpoint of its anchor S = R ∓ margin·w and the standing offer (or S
    when it opens). It accepts when the standing offer is at least as good as its next offer,
    or when the gap to its own last offer is within ``tolerance·w``. No time dependence.
    """

    family = "reciprocal"

    def _configure(self) -> None:
        self.tolerance = float(self.params["tolerance"])

    def decide(self, obs: Observation) -> Action:
        own, opp = self.own, self.opp
        o = obs.standing_offer
        if not own:
            target = self.anchor if o is None else 0.5 * (self.anchor + o)
        elif not opp:
            target = own[-1]
        else:
            target = 0.5 * (own[-1] + opp[-1])
            if self.sign * (target - own[-1]) < 0:  # never retreat
                target = own[-1]
        if (
            own
            and o is not None
            and self.acceptable(o)
            and abs(o - own[-1]) <= self.tolerance * self.width
        ):
            return _ACCEPT
        return self.respond(obs, target)


# --------------------------------------------------------------------------------------------
# Firm
# --------------------------------------------------------------------------------------------


class Hardliner(Strategy):
    """Hold at the anchor S = R ∓ margin·w; cave to R ∓ cave·w once ``turns_remaining <=
    cave_turns``. Caving with 1–2 turns left (not on the very last turn, as the research code's
    seller did) leaves the opponent a turn to accept the caved offer."""

    family = "firm"

    def _configure(self) -> None:
        self.cave = float(self.params["cave"])
        self.cave_turns = int(self.params["cave_turns"])

    def decide(self, obs: Observation) -> Action:
        if obs.max_turns - obs.turn <= self.cave_turns:
            target = self.R - self.sign * self.cave * self.width
        else:
            target = self.anchor
        return self.respond(obs, target)


class MiCRO(Strategy):
    """MiCRO (de Jonge, 2022): concede one grid step only when the opponent has made at least
    as many distinct offers as itself.

    The grid runs from the anchor S = R ∓ margin·w toward R in steps of ``step·w`` (never past
    R). With m distinct own offers and n distinct opponent offers it may concede iff m <= n;
    then it offers the next grid price, otherwise it repeats one of its past offers at random.
    It accepts an offer at least as good as the price it would concede to next (or, when it may
    not concede, its most conceded offer).
    """

    family = "firm"

    def _configure(self) -> None:
        self.step = float(self.params["step"])
        self._own_distinct: set[float] = set()
        self._opp_distinct: set[float] = set()
        self._counted_own = 0
        self._counted_opp = 0

    def _setup(self, obs: Observation) -> None:
        self.step_size = self.step * self.width
        #: number of grid prices: the anchor and every step that does not pass R
        self.grid_size = int(min(abs(self.R - self.anchor) / self.step_size + 1e-9, 1e9)) + 1

    def grid(self, k: int) -> float:
        """The k-th grid price (k = 0 is the anchor)."""
        return self.clamp(self.anchor + self.sign * k * self.step_size)

    def decide(self, obs: Observation) -> Action:
        own_d, opp_d = self._own_distinct, self._opp_distinct
        own, opp = self.own, self.opp
        for p in own[self._counted_own :]:
            own_d.add(p)
        for p in opp[self._counted_opp :]:
            opp_d.add(p)
        self._counted_own, self._counted_opp = len(own), len(opp)
        # its distinct offers are grid(0), ..., grid(m - 1): it concedes one step at a time
        m = min(len(own_d), self.grid_size)
        may_concede = m <= len(opp_d) and m < self.grid_size
        threshold = self.grid(m if may_concede else m - 1)
        if self.should_accept(obs, threshold):
            return _ACCEPT
        if may_concede:
            return Action.offer(threshold)
        return Action.offer(self.grid(self.rng.randrange(m)))


# --------------------------------------------------------------------------------------------
# Adaptive
# --------------------------------------------------------------------------------------------


class ChargingBoul(Strategy):
    """ChargingBoul-style adaptive Boulware that classifies the opponent's concessions.

    Opponent model (rebuilt from this episode's offers only, kept in the agent): with at least
    3 opponent offers, its net concession toward us is measured. At most ``hard_tol·w``: a
    *hardliner*. Otherwise the per-offer concession rate of the later half is compared with the
    earlier half: more than 1.5 times faster late → *boulwarish*, else *conceder*. Before that
    the class is *unknown*.

    Reaction: against a conceder it exploits (exponent halved: firmer); against a boulwarish
    opponent it keeps its parameters; against a hardliner, who will not move, it concedes
    (exponent at least 2, floor 0: it may go all the way to R).

    Target utility u = 1 − (1 − floor)·τ^(1/e) (1 = the anchor S = R ∓ margin·w, 0 = R, τ =
    t/T). The bid is drawn uniformly within ±window·w·(1 + 3τ) of the target, kept between S and
    R; if the opponent has already offered something better, it re-proposes that instead.
    It accepts an offer at least as good as its bid.
    """

    family = "adaptive"
    CLASSES: ClassVar[tuple[str, ...]] = ("unknown", "hardliner", "conceder", "boulwarish")

    def _configure(self) -> None:
        self.floor = float(self.params["floor"])
        self.e = float(self.params["e"])
        self.window = float(self.params["window"])
        self.hard_tol = float(self.params["hard_tol"])
        self.opponent_class = "unknown"
        self._classified_at = 0

    def classify(self) -> str:
        opp = self.opp
        k = len(opp)
        if k >= 3 and k != self._classified_at:
            self._classified_at = k
            s = self.sign
            total = s * (opp[0] - opp[-1])
            if total <= self.hard_tol * self.width:
                self.opponent_class = "hardliner"
            else:
                n = k - 1
                half = n // 2
                front = s * (opp[0] - opp[half]) / half
                back = s * (opp[half] - opp[-1]) / (n - half)
                self.opponent_class = "boulwarish" if back > 1.5 * max(front, 0.0) else "conceder"
        return self.opponent_class

    def decide(self, obs: Observation) -> Action:
        cls = self.classify()
        e, floor = self.e, self.floor
        if cls == "conceder":
            e = 0.5 * e
        elif cls == "hardliner":
            e, floor = max(e, 2.0), 0.0
        tau = min(obs.turn / obs.max_turns, 0.9999)
        concede = (1.0 - floor) * tau ** (1.0 / e)
        target = self.toward(concede)
        h = self.window * self.width * (3.0 * tau + 1.0)
        bid = target + self.rng.uniform(-h, h)
        s = self.sign
        if s * (bid - self.anchor) < 0:
            bid = self.anchor
        best = self.best_received()
        if best is not None and s * (best - bid) < 0 and self.acceptable(best):
            bid = best
        return self.respond(obs, bid)


# --------------------------------------------------------------------------------------------
# Fair
# --------------------------------------------------------------------------------------------


class Fair(Strategy):
    """Converge toward F, the midpoint of the two sides' opening offers, at rate ``rate``.

    Anchor: it always opens at S = R ∓ margin·w. Once both opening offers are known,
    F = (own opening + opponent opening)/2 (kept no worse than R), and its k-th offer after the
    opening is own_opening + (F − own_opening)·(1 − (1 − rate)^k): a higher rate closes more of
    the gap per offer. It accepts any offer no worse than R and within ``tolerance·w`` of F or
    better. Two Fair agents compute the same F and settle within the tolerance of it.
    """

    family = "fair"

    def _configure(self) -> None:
        self.rate = float(self.params["rate"])
        self.tolerance = float(self.params["tolerance"])

    def fair_point(self) -> float | None:
        if not self.own or not self.opp:
            return None
        return 0.5 * (self.own[0] + self.opp[0])

    def decide(self, obs: Observation) -> Action:
        f = self.fair_point()
        if f is None:
            return self.respond(obs, self.anchor)
        f = self.clamp(f)
        start = self.own[0]
        progress = 1.0 - (1.0 - self.rate) ** len(self.own)
        target = start + (f - start) * progress
        return self.respond(obs, target, accept_at=f + self.sign * self.tolerance * self.width)


# --------------------------------------------------------------------------------------------
# Naive and random
# --------------------------------------------------------------------------------------------


class NaiveConcession(Strategy):
    """Offer R ∓ (buffer ± jitter)·w from the start (no anchor: it gives nearly everything away);
    accept any offer no worse than R."""

    family = "naive"
    uses_anchor = False

    def _configure(self) -> None:
        self.buffer = float(self.params["buffer"])
        self.jitter = float(self.params["jitter"])

    def decide(self, obs: Observation) -> Action:
        d = (self.buffer + self.rng.uniform(-self.jitter, self.jitter)) * self.width
        return self.respond(obs, self.R - self.sign * d, accept_at=self.R)


class NaiveBoulware(Strategy):
    """A Boulware curve run backwards: it starts at R and drifts *away* from it, offering
    R ∓ margin·w·(t/T)^beta; accepts any offer no worse than R."""

    family = "naive"

    def _configure(self) -> None:
        self.beta = float(self.params["beta"])

    def decide(self, obs: Observation) -> Action:
        drift = (obs.turn / obs.max_turns) ** self.beta
        return self.respond(obs, self.toward(1.0 - drift), accept_at=self.R)


class UniformRandom(Strategy):
    """Offer a price drawn uniformly from the rational part of the range ([low, R] for the
    buyer, [R, high] for the seller); accept an offer no worse than R with probability
    ``accept_prob`` (always on the last turn). Training only."""

    family = "random"
    uses_anchor = False

    def _configure(self) -> None:
        self.accept_prob = float(self.params["accept_prob"])

    def decide(self, obs: Observation) -> Action:
        o = obs.standing_offer
        if (
            o is not None
            and self.acceptable(o)
            and (obs.turn >= obs.max_turns or self.rng.random() < self.accept_prob)
        ):
            return _ACCEPT
        return Action.offer(self.clamp(self.rng.uniform(self.lo, self.hi)))


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StrategySpec:
    """One registered behaviour: its name, family, one-line description, parameters and
    defaults, and its place in the default pools."""

    name: str
    family: str
    description: str
    defaults: Mapping[str, ParamValue] = field(hash=False)
    held_out: bool
    training_only: bool


# Parameter checks: name -> (predicate, what it must be)
_CHECKS: Mapping[str, tuple[Any, str]] = MappingProxyType(
    {
        "margin": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
        "margin_spread": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
        "e": (lambda v: v > 0.0, "> 0"),
        "noise": (lambda v: v >= 0.0, ">= 0"),
        "gesture": (lambda v: v >= 0.0, ">= 0"),
        "factor": (lambda v: v >= 0.0, ">= 0"),
        "tolerance": (lambda v: v >= 0.0, ">= 0"),
        "cave": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
        "cave_turns": (lambda v: v >= 0, ">= 0"),
        "step": (lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
        "floor": (lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
        "window": (lambda v: v >= 0.0, ">= 0"),
        "hard_tol": (lambda v: v >= 0.0, ">= 0"),
        "rate": (lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
        "buffer": (lambda v: v >= 0.0, ">= 0"),
        "jitter": (lambda v: v >= 0.0, ">= 0"),
        "beta": (lambda v: v > 0.0, "> 0"),
        "accept_prob": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
    }
)


_Row = tuple[str, type[Strategy], str, Mapping[str, ParamValue], bool, bool]


def _row(
    name: str,
    cls: type[Strategy],
    description: str,
    *,
    held_out: bool = False,
    training_only: bool = False,
    **defaults: ParamValue,
) -> _Row:
    return (name, cls, description, MappingProxyType(defaults), held_out, training_only)


# ChargingBoul parameters shared by its variants
_CB = MappingProxyType({"window": 0.008, "hard_tol": 0.01})
_MICRO = "MiCRO: concedes a {}-of-range step only once the opponent made as many distinct offers"
_FAIR = "converges toward the midpoint of the two opening offers, closing {} of the gap per offer"

_TABLE: tuple[_Row, ...] = (
    # time-dependent (Faratin): e < 1 Boulware, e = 1 linear, e > 1 Conceder
    _row("boulware_hard", TimeDependent, "Faratin time-dependent, very firm Boulware (e = 0.2)",
         e=0.2, margin=0.35, margin_spread=0.1),
    _row("boulware", TimeDependent, "Faratin time-dependent Boulware: concedes late (e = 0.5)",
         e=0.5, margin=0.35, margin_spread=0.1),
    _row("linear", TimeDependent, "Faratin time-dependent, linear from anchor to R (e = 1)",
         e=1.0, margin=0.35, margin_spread=0.1),
    _row("conceder", TimeDependent, "Faratin time-dependent Conceder: concedes early (e = 2)",
         e=2.0, margin=0.35, margin_spread=0.1),
    _row("conceder_fast", TimeDependent, "Faratin time-dependent, fast Conceder (e = 5)",
         e=5.0, margin=0.35, margin_spread=0.1, held_out=True),
    # noisy time-dependent
    _row("noisy_boulware", NoisyTimeDependent, "Boulware (e = 0.5) with ±2%-of-range offer noise",
         e=0.5, margin=0.35, margin_spread=0.1, noise=0.02),
    _row("noisy_linear", NoisyTimeDependent, "linear (e = 1) with ±2%-of-range offer noise",
         e=1.0, margin=0.35, margin_spread=0.1, noise=0.02),
    _row("noisy_conceder", NoisyTimeDependent, "Conceder (e = 2) with ±2%-of-range offer noise",
         e=2.0, margin=0.35, margin_spread=0.1, noise=0.02),
    # reciprocal
    _row("tit_for_tat", RelativeTitForTat,
         "relative tit-for-tat: mirrors the opponent's last concession in percentage terms",
         margin=0.35, margin_spread=0.1, gesture=0.02, factor=1.0),
    _row("tit_for_tat_generous", RelativeTitForTat,
         "relative tit-for-tat that returns 1.5 times the opponent's concession",
         margin=0.35, margin_spread=0.1, gesture=0.02, factor=1.5, held_out=True),
    _row("split_difference", SplitDifference,
         "offers the midpoint of its last offer and the opponent's last offer",
         margin=0.35, margin_spread=0.1, tolerance=0.01),
    # firm
    _row("hardliner", Hardliner, "holds its opening price; caves to just short of R near the end",
         margin=0.35, margin_spread=0.1, cave=0.01, cave_turns=2),
    _row("micro_fine", MiCRO, _MICRO.format("1%"), margin=0.35, margin_spread=0.1, step=0.01),
    _row("micro", MiCRO, _MICRO.format("2%"), margin=0.35, margin_spread=0.1, step=0.02),
    _row("micro_coarse", MiCRO, _MICRO.format("4%"), margin=0.35, margin_spread=0.1, step=0.04,
         held_out=True),
    # adaptive
    _row("charging_boul", ChargingBoul,
         "ChargingBoul-style Boulware adapting to its opponent (hardliner/conceder/boulwarish)",
         margin=0.35, margin_spread=0.1, floor=0.1, e=0.5, **_CB),
    _row("charging_boul_aggressive", ChargingBoul,
         "ChargingBoul, firmer: high utility floor, small exponent",
         margin=0.35, margin_spread=0.1, floor=0.3, e=0.25, **_CB),
    _row("charging_boul_patient", ChargingBoul,
         "ChargingBoul, patient: concedes late but may go all the way to R",
         margin=0.35, margin_spread=0.1, floor=0.0, e=0.3, **_CB, held_out=True),
    # fair
    _row("fair_slow", Fair, _FAIR.format("20%"),
         margin=0.35, margin_spread=0.1, rate=0.2, tolerance=0.01),
    _row("fair", Fair, _FAIR.format("40%"),
         margin=0.35, margin_spread=0.1, rate=0.4, tolerance=0.01),
    _row("fair_fast", Fair, _FAIR.format("80%"),
         margin=0.35, margin_spread=0.1, rate=0.8, tolerance=0.01, held_out=True),
    # naive
    _row("naive_concession", NaiveConcession,
         "offers just short of its reservation from the start; accepts anything acceptable",
         buffer=0.02, jitter=0.01),
    _row("naive_boulware", NaiveBoulware,
         "a Boulware curve run backwards: starts at R and drifts away from it",
         margin=0.35, margin_spread=0.1, beta=3.0),
    # random
    _row("random_uniform", UniformRandom,
         "uniformly random rational offers, random acceptance (training only)",
         accept_prob=0.3, training_only=True),
)  # fmt: skip

_CLASSES: Mapping[str, type[Strategy]] = MappingProxyType({row[0]: row[1] for row in _TABLE})

REGISTRY: Mapping[str, StrategySpec] = MappingProxyType(
    {
        name: StrategySpec(
            name=name,
            family=cls.family,
            description=description,
            defaults=MappingProxyType(dict(defaults)),
            held_out=held_out,
            training_only=training_only,
        )
        for name, cls, description, defaults, held_out, training_only in _TABLE
    }
)


def _coerce(name: str, key: str, value: Any, default: ParamValue) -> ParamValue:
    try:
        if isinstance(default, bool | str):
            return str(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"strategy {name!r}: parameter {key!r} must be a {type(default).__name__}, "
            f"got {value!r}"
        ) from None


def create_strategy(name: str, seed: int, **params: Any) -> Strategy:
    """A fresh agent of strategy ``name`` for one seat of one episode, seeded with ``seed``.

    ``params`` override the registered defaults; an unknown name or parameter raises
    :class:`ValueError` listing the valid ones.
    """
    spec = REGISTRY.get(name)
    if spec is None:
        raise ValueError(f"unknown strategy {name!r}; valid strategies: {', '.join(REGISTRY)}")
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for strategy {name!r}; "
            f"valid parameters: {', '.join(spec.defaults) or '(none)'}"
        )
    merged: dict[str, ParamValue] = dict(spec.defaults)
    for key, value in params.items():
        merged[key] = _coerce(name, key, value, spec.defaults[key])
    for key, value in merged.items():
        check = _CHECKS.get(key)
        if check is not None and not check[0](value):
            raise ValueError(
                f"strategy {name!r}: parameter {key!r} must be {check[1]}, got {value!r}"
            )
    return _CLASSES[name](name, int(seed), merged)


def training_pool() -> list[str]:
    """The default pool of ``janus generate``: every strategy not held out (training-only ones
    included)."""
    return [name for name, spec in REGISTRY.items() if not spec.held_out]


def held_out_pool() -> list[str]:
    """The default held-out set: opponents never seen in training, for evaluation."""
    return [name for name, spec in REGISTRY.items() if spec.held_out]


def evaluation_pool() -> list[str]:
    """In-pool evaluation opponents: not held out and not training-only."""
    return [name for name, spec in REGISTRY.items() if not spec.held_out and not spec.training_only]


def describe(name: str) -> str:
    """Name, family, description and parameters of one strategy (for ``janus strategies``)."""
    spec = REGISTRY.get(name)
    if spec is None:
        raise ValueError(f"unknown strategy {name!r}; valid strategies: {', '.join(REGISTRY)}")
    tags = [
        t for t, on in (("held-out", spec.held_out), ("training-only", spec.training_only)) if on
    ]
    params = ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in spec.defaults.items()
    )
    head = f"{spec.name} [{spec.family}]" + (f" ({', '.join(tags)})" if tags else "")
    return f"{head}: {spec.description}\n    params: {params or '(none)'}"
