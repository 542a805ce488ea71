"""Many NegMAS mechanisms stepped together, every pending Janus decision in one batch.

The counterpart of :func:`janus.episode.run_episodes` for ``SAOMechanism`` s: at every round,
the next negotiator of each running mechanism is looked up; the Janus ones
(:class:`~.negotiator.PolicyNegotiator` with a shared batch policy) get their observation,
all of them are answered by one ``act_batch`` per agent, handed over with ``give``, and then
each mechanism takes one ordinary ``step()``, in which the negotiator plays the answer it was
given (NegMAS itself does the rest: callbacks, acceptance, the clock). Batching needs
``one_offer_per_step=True`` (a step is then one action, so the next mover is known); other
mechanisms still run correctly, their Janus decisions answered one by one.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from janus.integrations.negmas.negotiator import PolicyNegotiator, answer_all

__all__ = ["run_negotiations"]


def _over(mechanism) -> bool:
    state = mechanism.state
    return bool(state.ended or state.ended_without_starting)


def _next_janus(mechanism) -> PolicyNegotiator | None:
    """The negotiator that acts at the mechanism's next step, if it is a batchable Janus one."""
    state = mechanism.state
    if _over(mechanism) or not mechanism.internal_nmi.one_offer_per_step:
        return None
    n_steps = mechanism.internal_nmi.n_steps
    if n_steps is not None and state.step >= n_steps:
        return None  # the next step() ends it on the clock
    ids = mechanism.next_negotitor_ids()  # (sic: NegMAS 0.16's spelling)
    if not ids:
        return None
    negotiator = mechanism.get_negotiator(ids[0])
    if not isinstance(negotiator, PolicyNegotiator):
        return None
    return negotiator


def _prefetch(mechanisms: Sequence[Any]) -> int:
    requests, takers = [], []
    for mechanism in mechanisms:
        negotiator = _next_janus(mechanism)
        if negotiator is None:
            continue
        negotiator._prepare()
        if getattr(negotiator.policy, "batch_policy", None) is None:
            continue  # a scripted policy: cheaper to let it act in its own step
        obs = negotiator.next_observation(mechanism.state_for(negotiator))
        requests.append((negotiator.policy, obs))
        takers.append(negotiator)
    for negotiator, (_, obs), action in zip(takers, requests, answer_all(requests), strict=True):
        negotiator.give(obs, action)
    return len(requests)


def run_negotiations(
    mechanisms: Sequence[Any],
    *,
    seeds: Sequence[int] | None = None,
    on_finished: Callable[[int], None] | None = None,
) -> list[Any]:
    """Run every mechanism to its end; returns their final states, in order.

    ``seeds`` (one per mechanism) reseed Python's and NumPy's global generators before each
    of that mechanism's steps with ``(seed, step)``, so an opponent that draws random numbers
    (NegMAS's negotiators use the global generators) behaves the same whatever other
    negotiations run beside it: what makes paired evaluation episodes paired.
    ``on_finished(n)`` is told after each round how many mechanisms it ended.
    """
    if seeds is not None and len(seeds) != len(mechanisms):
        raise ValueError(f"{len(seeds)} seeds for {len(mechanisms)} mechanisms")
    active = list(range(len(mechanisms)))
    while active:
        _prefetch([mechanisms[i] for i in active])
        for i in active:
            mechanism = mechanisms[i]
            if seeds is not None:
                step_seed = hash((int(seeds[i]), mechanism.state.step)) & 0xFFFFFFFF
                random.seed(step_seed)
                np.random.seed(step_seed)
            mechanism.step()
        still = [i for i in active if not _over(mechanisms[i])]
        if on_finished is not None and len(still) < len(active):
            on_finished(len(active) - len(still))
        active = still
    return [mechanism.state for mechanism in mechanisms]
