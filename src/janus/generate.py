"""Dataset generation: match-making, parallel episode generation, and the run summary.

Every random choice of a run flows from its seed. Episode ``i`` of a run is a pure function of
``(plan, i)`` (:func:`make_match`): its own seed is derived from ``(seed, i)``
(:func:`episode_seed`), and that seed alone draws the strategy pair, the scenario and the
strategies' own seeds. So a run's output does not depend on how the indices are split
between worker processes: workers serialise contiguous index ranges into text chunks and the
parent writes the chunks in index order — same seed, byte-identical file, any ``workers``.

Trajectory ids are ``<run_id>-<index:08d>``, where ``run_id`` is a hash of the seed and of
everything that shapes an episode (pool, domain, schema version). Two different runs never
share ids, and a re-run of the same configuration reproduces the same ids for the same
trajectories (a longer run extends a shorter one).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
import random
import signal
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from janus import strategies as registry
from janus.dataset import SCHEMA_VERSION, DatasetWriter, check_output_file, serialize_trajectory
from janus.domain import DomainConfig, Role, ZopaWidth, sample_scenario
from janus.episode import Match, run_episode
from janus.strategies import create_strategy

__all__ = [
    "GenerationPlan",
    "GenerationSummary",
    "episode_seed",
    "generate",
    "make_match",
    "make_plan",
    "resolve_pool",
]

RHO_BINS = 10
DEFAULT_CHUNK = 250


# ------------------------------------------------------------------------------------- plan


def resolve_pool(
    strategies: Sequence[str] | None = None, *, include_held_out: bool = False
) -> tuple[str, ...]:
    """The strategy pool of a run.

    ``None``: the training pool, plus the held-out pool if ``include_held_out``. An explicit
    list is used as given (items may also be comma-separated; order kept, duplicates
    removed); naming a held-out strategy without ``include_held_out`` is an error, so
    evaluation opponents never leak into training data by accident. Unknown names raise
    :class:`ValueError` listing the valid ones.
    """
    held_out = set(registry.held_out_pool())
    if strategies is None:
        pool = list(registry.training_pool())
        if include_held_out:
            pool += [name for name in registry.held_out_pool() if name not in pool]
    else:
        names = (part.strip() for item in strategies for part in item.split(","))
        pool = list(dict.fromkeys(name for name in names if name))
        unknown = [name for name in pool if name not in registry.REGISTRY]
        if unknown:
            raise ValueError(
                f"unknown strategy {', '.join(map(repr, unknown))}; "
                f"valid strategies: {', '.join(registry.REGISTRY)}"
            )
        leaked = [name for name in pool if name in held_out]
        if leaked and not include_held_out:
            raise ValueError(
                f"{', '.join(leaked)} {'is' if len(leaked) == 1 else 'are'} held out for "
                "evaluation; pass --include-held-out to generate training data with "
                f"{'it' if len(leaked) == 1 else 'them'}"
            )
    if not pool:
        raise ValueError("the strategy pool is empty")
    return tuple(pool)


@dataclass(frozen=True)
class GenerationPlan:
    """Everything that decides the episodes of a run (not how many, nor where they go)."""

    seed: int
    pool: tuple[str, ...]
    domain: DomainConfig
    include_impasse: bool = False

    @cached_property
    def run_id(self) -> str:
        """12 hex digits identifying (seed, pool, domain, schema version)."""
        d = self.domain
        key = {
            "schema_version": SCHEMA_VERSION,
            "seed": self.seed,
            "pool": list(self.pool),
            "price_range": [d.price_range.low, d.price_range.high],
            "buyer_max": [d.buyer_max_mean, d.buyer_max_std],
            "zopa_width": [d.zopa_width.low, d.zopa_width.high],
            "max_turns": d.max_turns,
        }
        text = json.dumps(key, sort_keys=True, separators=(",", ":"))
        return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()

    def trajectory_id(self, index: int) -> str:
        return f"{self.run_id}-{index:08d}"


def make_plan(
    *,
    seed: int = 0,
    strategies: Sequence[str] | None = None,
    include_held_out: bool = False,
    zopa_width: str | ZopaWidth | None = None,
    max_turns: int | None = None,
    include_impasse: bool = False,
) -> GenerationPlan:
    """Resolve the options of ``janus generate`` into a :class:`GenerationPlan`."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if zopa_width is None:
        width = ZopaWidth()
    elif isinstance(zopa_width, ZopaWidth):
        width = zopa_width
    else:
        width = ZopaWidth.parse(str(zopa_width))
    domain = DomainConfig(zopa_width=width)
    if max_turns is not None:
        domain = DomainConfig(zopa_width=width, max_turns=int(max_turns))
    return GenerationPlan(
        seed=seed,
        pool=resolve_pool(strategies, include_held_out=include_held_out),
        domain=domain,
        include_impasse=include_impasse,
    )


def episode_seed(seed: int, index: int) -> int:
    """The seed of episode ``index`` of a run seeded ``seed``: a 63-bit hash of both."""
    digest = hashlib.blake2b(f"janus-episode:{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def first_mover(index: int) -> Role:
    """Balanced first mover: the buyer opens even episodes, the seller odd ones."""
    return Role.BUYER if index % 2 == 0 else Role.SELLER


def make_match(plan: GenerationPlan, index: int) -> tuple[Match, str, str, int]:
    """Episode ``index`` of a run: (match, buyer strategy, seller strategy, episode seed).

    The episode seed draws, in this order: the buyer's strategy, the seller's (independently
    and uniformly from the pool), the scenario, then each strategy's own seed.
    """
    seed = episode_seed(plan.seed, index)
    rng = random.Random(seed)
    pool = plan.pool
    buyer_name = pool[rng.randrange(len(pool))]
    seller_name = pool[rng.randrange(len(pool))]
    scenario = sample_scenario(plan.domain, rng, first_mover(index))
    buyer = create_strategy(buyer_name, rng.getrandbits(63))
    seller = create_strategy(seller_name, rng.getrandbits(63))
    return Match(buyer, seller, scenario, seed), buyer_name, seller_name, seed


# ---------------------------------------------------------------------------------- summary


@dataclass
class GenerationSummary:
    """What a run produced. ``print(summary)`` gives a short report."""

    path: Path | None = None
    run_id: str = ""
    seed: int = 0
    episodes: int = 0
    agreements: int = 0
    impasses: int = 0
    outside_zopa: int = 0
    trajectories_written: int = 0
    records_written: int = 0
    turns: int = 0
    rho_histogram: list[int] = field(default_factory=lambda: [0] * RHO_BINS)
    pair_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    pair_agreements: Counter[tuple[str, str]] = field(default_factory=Counter)
    first_movers: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def agreement_rate(self) -> float:
        return self.agreements / self.episodes if self.episodes else 0.0

    @property
    def rho_fractions(self) -> list[float]:
        """Share of agreements in each tenth of ρ: [0, 0.1), …, [0.9, 1.0]."""
        total = sum(self.rho_histogram)
        return [count / total if total else 0.0 for count in self.rho_histogram]

    @property
    def episodes_per_second(self) -> float:
        return self.episodes / self.seconds if self.seconds else 0.0

    def merge(self, other: GenerationSummary) -> None:
        self.episodes += other.episodes
        self.agreements += other.agreements
        self.impasses += other.impasses
        self.outside_zopa += other.outside_zopa
        self.trajectories_written += other.trajectories_written
        self.records_written += other.records_written
        self.turns += other.turns
        self.rho_histogram = [
            a + b for a, b in zip(self.rho_histogram, other.rho_histogram, strict=True)
        ]
        self.pair_counts.update(other.pair_counts)
        self.pair_agreements.update(other.pair_agreements)
        self.first_movers.update(other.first_movers)

    def format(self) -> str:
        lines = [
            f"wrote {self.trajectories_written:,} trajectories ({self.records_written:,} "
            f"decision steps) to {self.path}"
            if self.path
            else "generated (not written)",
            f"run {self.run_id}, seed {self.seed}: {self.episodes:,} episodes in "
            f"{self.seconds:.1f} s ({self.episodes_per_second:,.0f} episodes/s)",
            f"agreement rate {self.agreement_rate:.1%} ({self.agreements:,} agreements, "
            f"{self.impasses:,} impasses), mean {self.turns / max(self.episodes, 1):.1f} turns, "
            f"first mover {dict(sorted(self.first_movers.items()))}",
        ]
        if self.path and not self.trajectories_written:
            lines.append("WARNING: no trajectory was written (only impasses? see include_impasse)")
        if self.outside_zopa:
            lines.append(
                f"WARNING: {self.outside_zopa} agreements outside the ZOPA were dropped "
                "(a strategy accepted a price worse than its reservation)"
            )
        lines.append("ρ of agreements, by tenth:")
        for i, (count, share) in enumerate(
            zip(self.rho_histogram, self.rho_fractions, strict=True)
        ):
            right = "]" if i == RHO_BINS - 1 else ")"
            bar = "#" * round(share * 100)
            lines.append(
                f"  [{i / 10:.1f}, {(i + 1) / 10:.1f}{right} {count:>9,} {share:6.1%} {bar}"
            )
        if self.pair_counts:
            counts = sorted(self.pair_counts.values())
            lines.append(
                f"strategy pairs: {len(counts)} distinct, episodes per pair "
                f"min {counts[0]}, median {counts[len(counts) // 2]}, max {counts[-1]}"
            )
            rates: dict[str, list[int]] = {}
            for (buyer, seller), n in self.pair_counts.items():
                agreed = self.pair_agreements[(buyer, seller)]
                for name in (buyer, seller):
                    entry = rates.setdefault(name, [0, 0])
                    entry[0] += agreed
                    entry[1] += n
            lines.append("per strategy (either side): episodes, agreement rate")
            for name in sorted(rates):
                agreed, n = rates[name]
                lines.append(f"  {name:<26} {n:>9,} {agreed / n:6.1%}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


# ------------------------------------------------------------------------------- generation


def rho_bin(rho: float) -> int:
    """Index of the tenth of [0, 1] holding ρ (1.0 falls in the last one)."""
    return min(int(rho * RHO_BINS), RHO_BINS - 1)


def generate_chunk(plan: GenerationPlan, start: int, stop: int) -> tuple[bytes, GenerationSummary]:
    """Play episodes ``start``..``stop − 1``; return their JSONL text and their statistics.

    Agreements outside the ZOPA (ρ ∉ [0, 1]) are never written: they would fail validation.
    They are counted in ``outside_zopa`` and the summary warns about them.
    """
    stats = GenerationSummary()
    parts: list[str] = []
    hist = stats.rho_histogram
    include_impasse = plan.include_impasse
    run_id = plan.run_id
    for index in range(start, stop):
        match, buyer_name, seller_name, seed = make_match(plan, index)
        result = run_episode(match)
        outcome = result.outcome
        pair = (buyer_name, seller_name)
        stats.pair_counts[pair] += 1
        stats.first_movers[match.scenario.first_mover.value] += 1
        stats.turns += len(result.steps)
        if outcome.agreement:
            if not 0.0 <= outcome.rho <= 1.0:
                stats.outside_zopa += 1
                continue
            stats.agreements += 1
            stats.pair_agreements[pair] += 1
            hist[rho_bin(outcome.rho)] += 1
        else:
            stats.impasses += 1
            if not include_impasse:
                continue
        parts.append(
            serialize_trajectory(
                result,
                trajectory_id=f"{run_id}-{index:08d}",
                buyer_strategy=buyer_name,
                seller_strategy=seller_name,
                seed=seed,
                episode=index,
            )
        )
        stats.trajectories_written += 1
        stats.records_written += len(result.steps)
    stats.episodes = stop - start
    return "".join(parts).encode(), stats


_WORKER_PLAN: GenerationPlan | None = None


def _init_worker(plan: GenerationPlan) -> None:
    global _WORKER_PLAN
    _WORKER_PLAN = plan
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


def _worker_chunk(bounds: tuple[int, int]) -> tuple[bytes, GenerationSummary]:
    assert _WORKER_PLAN is not None
    return generate_chunk(_WORKER_PLAN, *bounds)


def _chunks(episodes: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, episodes)) for start in range(0, episodes, size)]


def _mp_context() -> multiprocessing.context.BaseContext:
    """Workers start from a fresh single-threaded server process, never a fork of this one.

    Forking a process that already runs threads (torch's OpenMP pool, pyarrow's, a progress
    bar's monitor) can hand a child a lock held forever: in a long-lived process that had
    trained a model, a fork-started pool deadlocked on terminate(). The forkserver preloads
    this module once, so workers still start in milliseconds.
    """
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


def iter_chunks(
    plan: GenerationPlan, episodes: int, *, workers: int = 1, chunk_size: int | None = None
) -> Iterator[tuple[bytes, GenerationSummary]]:
    """Serialised chunks of episodes 0..episodes − 1, in index order, from ``workers``
    processes (``workers=1`` runs in this process); close the iterator to stop early."""
    size = chunk_size or DEFAULT_CHUNK
    chunks = _chunks(episodes, size)
    if workers <= 1 or len(chunks) <= 1:
        return (generate_chunk(plan, *bounds) for bounds in chunks)
    workers = min(workers, len(chunks))
    executor = ProcessPoolExecutor(
        max_workers=workers, mp_context=_mp_context(), initializer=_init_worker, initargs=(plan,)
    )
    return _drain(executor, chunks, in_flight=2 * workers)


def _drain(
    executor: ProcessPoolExecutor, chunks: list[tuple[int, int]], *, in_flight: int
) -> Iterator[tuple[bytes, GenerationSummary]]:
    """Results in chunk order, with at most ``in_flight`` chunks submitted at a time.

    On an error (in a worker or in the caller, e.g. a full disk) the chunks not yet started
    are cancelled and the running ones finish: no worker is killed mid-task. (Killing them,
    as ``Pool.terminate()`` does, left its task-handler thread waiting forever on a queue
    lock.) Chunks are small, so stopping takes well under a second.
    """
    remaining = iter(chunks)
    pending: deque[Future] = deque()
    try:
        for bounds in itertools.islice(remaining, in_flight):
            pending.append(executor.submit(_worker_chunk, bounds))
        while pending:
            result = pending.popleft().result()
            following = next(remaining, None)
            if following is not None:
                pending.append(executor.submit(_worker_chunk, following))
            yield result
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _check_run_sizes(episodes: int, workers: int, chunk_size: int | None) -> None:
    """Refuse a bad count before anything is planned or written (a bool is no count)."""
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size!r}")


def _default_chunk_size(episodes: int, workers: int) -> int:
    """About four chunks per worker, between 20 and :data:`DEFAULT_CHUNK` episodes each: small
    enough to spread the work and stop quickly, large enough to keep the overhead low."""
    return max(20, min(DEFAULT_CHUNK, episodes // (workers * 4) or 1))


def _write_run(
    out: str | os.PathLike[str],
    plan: GenerationPlan,
    summary: GenerationSummary,
    *,
    episodes: int,
    workers: int,
    chunk_size: int,
    include_impasse: bool,
    overwrite: bool,
    progress: bool,
) -> Path:
    """Play the run's chunks and write them to ``out`` in index order, counted into ``summary``.

    The workers start only once the output file is open, and stop on the way out (closing the
    chunks); returns the written path.
    """
    bar = None
    try:
        with DatasetWriter(out, overwrite=overwrite, include_impasse=include_impasse) as writer:
            chunks = iter_chunks(plan, episodes, workers=workers, chunk_size=chunk_size)
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=episodes, unit="ep", desc="generate", smoothing=0.1)
            with closing(chunks):
                for text, stats in chunks:
                    writer.write_serialized(
                        text,
                        trajectories=stats.trajectories_written,
                        records=stats.records_written,
                    )
                    summary.merge(stats)
                    if bar is not None:
                        bar.update(stats.episodes)
    finally:
        if bar is not None:
            bar.close()
    return writer.path


def generate(
    out: str | os.PathLike[str],
    *,
    episodes: int,
    seed: int = 0,
    workers: int = 1,
    include_impasse: bool = False,
    strategies: Sequence[str] | None = None,
    include_held_out: bool = False,
    zopa_width: str | ZopaWidth | None = None,
    max_turns: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    chunk_size: int | None = None,
) -> GenerationSummary:
    """``janus generate``: play ``episodes`` episodes and write them to ``out`` as JSONL.

    - ``episodes``: how many episodes to *play*; impasses are written only with
      ``include_impasse`` (ρ = −1.0), so the file may hold fewer trajectories.
    - ``seed``: every random choice derives from it; same seed, same bytes, any ``workers``.
    - ``strategies``: the pool (default: the training pool); ``include_held_out`` adds the
      held-out strategies to the default pool or allows naming them.
    - ``zopa_width``: ``"500"`` (fixed, the research setting) or ``"200:700"`` (uniform, the
      default).
    - ``overwrite``: replace an existing file (only once the new one is complete). Without it
      an existing ``out`` is a :class:`FileExistsError`; Janus never appends.
    - ``progress``: show a tqdm progress bar (on stderr).

    Returns the :class:`GenerationSummary` (print it for the report). Errors leave no file at
    ``out`` (nor a temporary one next to it).
    """
    _check_run_sizes(episodes, workers, chunk_size)
    plan = make_plan(
        seed=seed,
        strategies=strategies,
        include_held_out=include_held_out,
        zopa_width=zopa_width,
        max_turns=max_turns,
        include_impasse=include_impasse,
    )
    check_output_file(out, overwrite=overwrite)  # fail before any work
    if chunk_size is None:
        chunk_size = _default_chunk_size(episodes, workers)
    summary = GenerationSummary(run_id=plan.run_id, seed=seed)
    started = time.perf_counter()
    summary.path = _write_run(
        out,
        plan,
        summary,
        episodes=episodes,
        workers=workers,
        chunk_size=chunk_size,
        include_impasse=include_impasse,
        overwrite=overwrite,
        progress=progress,
    )
    summary.seconds = time.perf_counter() - started
    return summary
