"""The negotiation world: one item, one continuous price, two secret reservations.

Everything an agent may know is in :class:`Observation`; everything the world knows but the
agents do not (both reservations, the ZOPA width) is in :class:`Scenario`. Keeping the two
apart is how we avoid the research code's leak, where every scripted agent could rebuild the
opponent's secret from a fixed ZOPA width.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from enum import StrEnum

from janus.schema import IMPASSE_RHO

PRICE_LOW = 200.0
PRICE_HIGH = 1500.0
MAX_TURNS = 20


class Role(StrEnum):
    """The two sides of the table. Values are the strings written to datasets and prompts."""

    BUYER = "buyer"
    SELLER = "seller"

    @property
    def opponent(self) -> Role:
        return Role.SELLER if self is Role.BUYER else Role.BUYER


class ActionKind(StrEnum):
    OFFER = "OFFER"
    ACCEPT = "ACCEPT"


@dataclass(frozen=True, slots=True)
class PriceRange:
    """The public price range. Every price shown to a model is normalised against it."""

    low: float = PRICE_LOW
    high: float = PRICE_HIGH

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"price range needs finite low < high, got [{self.low}, {self.high}]")

    @property
    def width(self) -> float:
        return self.high - self.low

    def norm(self, price: float) -> float:
        """Map a price to [0, 1] (0 = low end of the public range)."""
        return (price - self.low) / (self.high - self.low)

    def denorm(self, value: float) -> float:
        """Inverse of :meth:`norm`."""
        return self.low + value * (self.high - self.low)

    def contains(self, price: float) -> bool:
        return self.low <= price <= self.high

    def clip(self, price: float) -> float:
        return min(max(price, self.low), self.high)


DEFAULT_RANGE = PriceRange()


def norm(price: float, price_range: PriceRange = DEFAULT_RANGE) -> float:
    """Normalise a price against the (default) public range."""
    return price_range.norm(price)


def denorm(value: float, price_range: PriceRange = DEFAULT_RANGE) -> float:
    """Turn a normalised price back into a price of the (default) public range."""
    return price_range.denorm(value)


@dataclass(frozen=True, slots=True)
class Offer:
    """One offer on the table: who made it, at which turn, for what price."""

    role: Role
    price: float
    turn: int


@dataclass(frozen=True, slots=True)
class Action:
    """What an agent does on its turn: ``OFFER price`` or ``ACCEPT`` the standing offer."""

    kind: ActionKind
    price: float | None = None

    @staticmethod
    def offer(price: float) -> Action:
        return Action(ActionKind.OFFER, float(price))

    @staticmethod
    def accept() -> Action:
        return Action(ActionKind.ACCEPT, None)

    @property
    def is_accept(self) -> bool:
        return self.kind is ActionKind.ACCEPT

    def __str__(self) -> str:
        return "ACCEPT" if self.is_accept else f"OFFER {self.price:.2f}"


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything one side may know when it is its turn to act, and nothing more.

    ``turn`` is 1-based; ``turns_remaining`` counts the turns after this one, so the last turn
    has 0 remaining (matching the canonical prompt: turn 7 of 20 leaves 13).
    """

    role: Role
    reservation: float
    price_range: PriceRange
    turn: int
    max_turns: int
    standing_offer: float | None
    history: tuple[Offer, ...]

    @property
    def turns_remaining(self) -> int:
        return self.max_turns - self.turn

    @property
    def time_fraction(self) -> float:
        """t / T in (0, 1]: the clock used by time-dependent tactics."""
        return self.turn / self.max_turns

    @property
    def reservation_norm(self) -> float:
        return self.price_range.norm(self.reservation)

    @property
    def own_offers(self) -> tuple[float, ...]:
        return tuple(o.price for o in self.history if o.role == self.role)

    @property
    def opponent_offers(self) -> tuple[float, ...]:
        return tuple(o.price for o in self.history if o.role != self.role)

    def is_acceptable(self, price: float) -> bool:
        """Whether a price is no worse than this side's reservation."""
        if self.role is Role.BUYER:
            return price <= self.reservation
        return price >= self.reservation

    def better_or_equal(self, price: float, than: float) -> bool:
        """Whether ``price`` is at least as good as ``than`` for this side."""
        return price <= than if self.role is Role.BUYER else price >= than


@dataclass(frozen=True, slots=True)
class ZopaWidth:
    """Distribution of the ZOPA width W = BuyerMax − SellerMin.

    The research code fixed W = 500, which let every agent infer the other's secret. The default
    draws W uniformly from [200, 700]; ``ZopaWidth.fixed(500)`` reproduces the original.
    """

    low: float = 200.0
    high: float = 700.0

    def __post_init__(self) -> None:
        if not (0 < self.low <= self.high) or not math.isfinite(self.high):
            raise ValueError(f"ZOPA width needs 0 < low <= high, got [{self.low}, {self.high}]")

    @staticmethod
    def fixed(width: float) -> ZopaWidth:
        return ZopaWidth(width, width)

    @staticmethod
    def parse(text: str) -> ZopaWidth:
        """Parse ``"500"`` (fixed) or ``"200:700"`` (uniform) as given on the command line."""
        try:
            parts = [float(p) for p in text.split(":")]
        except ValueError:
            raise ValueError(f"ZOPA width must be 'W' or 'LOW:HIGH', got {text!r}") from None
        if len(parts) == 1:
            return ZopaWidth.fixed(parts[0])
        if len(parts) == 2:
            return ZopaWidth(parts[0], parts[1])
        raise ValueError(f"ZOPA width must be 'W' or 'LOW:HIGH', got {text!r}")

    def sample(self, rng: random.Random) -> float:
        return self.low if self.low == self.high else rng.uniform(self.low, self.high)

    def __str__(self) -> str:
        return f"{self.low:g}" if self.low == self.high else f"{self.low:g}:{self.high:g}"


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """The knobs of the world: every number of the domain (docs/ARCHITECTURE.md) is one of these."""

    price_range: PriceRange = field(default_factory=PriceRange)
    buyer_max_mean: float = 900.0
    buyer_max_std: float = 50.0
    zopa_width: ZopaWidth = field(default_factory=ZopaWidth)
    max_turns: int = MAX_TURNS

    def __post_init__(self) -> None:
        if self.max_turns < 2:
            raise ValueError(f"max_turns must be at least 2, got {self.max_turns}")


#: Named domains (``janus evaluate --domain``). ``overlap`` draws reservations whose buyer and
#: seller ranges overlap widely (BuyerMax ~ N(800, 150), ZOPA width 100–400, so a reservation
#: of 700 may be either side's): there, only a prompt that names the decider's side can tell a
#: buyer from a seller before the history does. The default domain keeps them almost apart.
DOMAINS: dict[str, DomainConfig] = {
    "default": DomainConfig(),
    "overlap": DomainConfig(
        buyer_max_mean=800.0, buyer_max_std=150.0, zopa_width=ZopaWidth(100.0, 400.0)
    ),
}


def named_domain(name: str) -> DomainConfig:
    """The domain called ``name`` in :data:`DOMAINS` (one-line error for an unknown name)."""
    if name not in DOMAINS:
        raise ValueError(f"unknown domain {name!r}; choose from {', '.join(DOMAINS)}")
    return DOMAINS[name]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One episode's hidden facts: both reservations, the clock and who opens."""

    buyer_max: float
    seller_min: float
    first_mover: Role
    max_turns: int = MAX_TURNS
    price_range: PriceRange = DEFAULT_RANGE

    def __post_init__(self) -> None:
        if not (
            self.price_range.contains(self.seller_min) and self.price_range.contains(self.buyer_max)
        ):
            raise ValueError("reservations must lie inside the public price range")
        if not self.seller_min < self.buyer_max:
            raise ValueError(
                f"scenario needs SellerMin < BuyerMax, got {self.seller_min} >= {self.buyer_max}"
            )

    @property
    def zopa_width(self) -> float:
        return self.buyer_max - self.seller_min

    def reservation(self, role: Role) -> float:
        return self.buyer_max if role is Role.BUYER else self.seller_min

    def rho(self, price: float) -> float:
        """Where a price lands in the ZOPA: 0 = SellerMin (buyer-favourable), 1 = BuyerMax."""
        return compute_rho(price, self.buyer_max, self.seller_min)

    def in_zopa(self, price: float) -> bool:
        return self.seller_min <= price <= self.buyer_max


def compute_rho(price: float, buyer_max: float, seller_min: float) -> float:
    """ρ = (price − SellerMin) / (BuyerMax − SellerMin)."""
    return (price - seller_min) / (buyer_max - seller_min)


def sample_scenario(config: DomainConfig, rng: random.Random, first_mover: Role) -> Scenario:
    """Draw one episode's reservations.

    BuyerMax ~ N(mean, std) clamped into the public range, W from the configured distribution,
    SellerMin = BuyerMax − W. W is shrunk when it would push SellerMin below the public range
    (it cannot with the defaults), so SellerMin is never outside the range.
    """
    pr = config.price_range
    # Keep at least 1% of the range on each side so that a positive width always fits.
    margin = 0.01 * pr.width
    buyer_max = min(
        max(rng.gauss(config.buyer_max_mean, config.buyer_max_std), pr.low + margin), pr.high
    )
    width = min(config.zopa_width.sample(rng), buyer_max - pr.low)
    return Scenario(
        buyer_max=buyer_max,
        seller_min=buyer_max - width,
        first_mover=first_mover,
        max_turns=config.max_turns,
        price_range=pr,
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an episode ended. ρ is −1.0 and utilities are 0 for an impasse.

    Utilities are normalised surpluses: buyer (BuyerMax − p)/W, seller (p − SellerMin)/W, so they
    lie in [0, 1] for any agreement inside the ZOPA and go negative outside it.
    """

    agreement: bool
    final_price: float | None
    rho: float
    buyer_utility: float
    seller_utility: float
    turns: int

    @staticmethod
    def impasse(turns: int) -> Outcome:
        return Outcome(False, None, IMPASSE_RHO, 0.0, 0.0, turns)

    @staticmethod
    def agreed(scenario: Scenario, price: float, turns: int) -> Outcome:
        width = scenario.zopa_width
        return Outcome(
            agreement=True,
            final_price=price,
            rho=scenario.rho(price),
            buyer_utility=(scenario.buyer_max - price) / width,
            seller_utility=(price - scenario.seller_min) / width,
            turns=turns,
        )

    def utility(self, role: Role) -> float:
        return self.buyer_utility if role is Role.BUYER else self.seller_utility
