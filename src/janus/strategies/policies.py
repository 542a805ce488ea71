"""The scripted policies: one class per family member, each ending in ``Strategy.respond``."""

from __future__ import annotations

from typing import ClassVar

from janus.domain import Action, Observation
from janus.strategies.base import _ACCEPT, Strategy

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
