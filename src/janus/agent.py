"""JanusAgent: a trained adapter (or a bare base) that negotiates at any requested ρ.

One :class:`JanusAgent` holds the model; each episode seat is a light :class:`JanusSeat`
(a :class:`janus.episode.Negotiator`) carrying its ρ. The agent is the seats' shared
``batch_policy``, so the episode loop sends every pending decision of every seat through one
batched forward pass with one ρ per example.

ρ reaches the model twice — as prompt text and as ``model.current_rho`` for the gates — and
both come from :func:`janus.prompt.canonical_rho` of one value. The ``channels`` option of a
seat decouples them on purpose, for ablations only: ``"text"`` feeds the gates a fixed ρ,
``"weights"`` shows a fixed ρ in the prompt.

Safety rules (on by default, ``safety=False`` for research): an offer past the agent's own
reservation is clamped to it, and an ACCEPT of a standing offer worse than its reservation is
refused — the model is asked again with ACCEPT ruled out, so its answer is still its own best
offer. Every intervention is counted on the seat. Invalid moves that are not safety matters
(ACCEPT with nothing on the table) are left to the episode loop, which records them.

Agent rules (:mod:`janus.rules`: named options, counted on the seat like the safety rules)
close deals a cloned policy walks away from: ``firm_opening`` may change the dial of Janus's
first decision, after the safety clamp the counter rules (``no_retreat``, ``concede_on_stall``,
``reciprocate``, ``fresh_offer``) may move the counter, then an acceptance rule may turn it
into an ACCEPT of the standing offer.

A calibration map (:mod:`janus.calibration`), when the adapter has one, turns the requested ρ
into the dial value that lands there on average; ``calibrated=False`` plays the raw dial.

Driven from outside (NegMAS, a server): every observation is checked as it enters
(:mod:`janus.observation`, one line naming field, value and what was expected); ``price_step``
puts offers on the caller's price grid; ``threads`` is the agent's own, not process-wide.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from janus.calibration import CalibrationMap
from janus.decoding import ActionConstraint, check_price_decoding, constrained_decode
from janus.domain import Action, Observation
from janus.examples import add_special_tokens, encode_prompt
from janus.hyperlora import is_injected, rho_context
from janus.observation import check_observation, check_observations, check_price_step, snap_price
from janus.prompt import (
    DEFAULT_K,
    PROMPT_FORMAT_VERSION,
    PROMPT_VERSIONS,
    PromptState,
    build_prompt,
    canonical_rho,
    parse_action,
)
from janus.rules import (  # noqa: F401 - re-exported: the agent's options live with it
    ACCEPT_RULES,
    ACCEPTANCE_RULES,
    COUNTER_RULES,
    DEFAULT_RULES,
    acceptance_rule,
    check_rules,
    fresh_concession,
    no_retreat,
    opening_rho,
    reciprocal_concession,
    rule_total,
    stall_concession,
)
from janus.runtime import check_threads, torch_threads

CHANNELS = ("both", "text", "weights")
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_dtype(
    dtype: str | torch.dtype,
    adapter_config: Mapping[str, Any] | None = None,
    calibration: CalibrationMap | None = None,
) -> torch.dtype:
    """The base weights' dtype for playing. ``"auto"``: the dtype the adapter's calibration
    map was swept with, else the dtype the adapter trained with.

    A map says where the dial lands when played in its dtype, so playing it so keeps the map
    true (``janus demo`` sweeps and plays in bf16 on a CPU that computes bf16 natively: about
    twice as fast, the same in-pool calibration, benchmarks/RESULTS.md). A run trained with
    ``bf16`` held a bf16 base under autocast; playing it the same way reproduces its training
    numerics. Without either record, ``"auto"`` is float32.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        swept = (calibration.details if calibration is not None else {}).get("dtype")
        if swept is not None:
            if swept not in DTYPES:
                raise ValueError(f"the calibration map records an unknown dtype {swept!r}")
            return DTYPES[swept]
        train = (adapter_config or {}).get("train_config") or {}
        return torch.bfloat16 if train.get("bf16") else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be auto or one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    """The name :data:`DTYPES` knows a dtype by (what a calibration map records)."""
    return str(dtype).removeprefix("torch.")


def resolve_adapter_dir(path: str | Path) -> Path:
    """Accept a run directory (uses its ``adapter/``) or an adapter directory itself."""
    path = Path(path).expanduser()
    if (path / "adapter_config.json").is_file():
        return path
    if (path / "adapter" / "adapter_config.json").is_file():
        return path / "adapter"
    raise FileNotFoundError(f"{path}: neither a run directory nor an adapter directory")


def prompt_state(observation: Observation) -> PromptState:
    """The canonical prompt's view of a live observation (prices normalised to the range).

    The last offer shown is the latest offer on the table, as in the training data.
    """
    pr = observation.price_range
    history = tuple((offer.role.value, pr.norm(offer.price)) for offer in observation.history)
    return PromptState(
        turn=observation.turn,
        max_turns=observation.max_turns,
        reservation_norm=observation.reservation_norm,
        last_offer_norm=history[-1][1] if history else None,
        history=history,
        role=observation.role.value,
    )


@dataclass
class SeatStats:
    """What happened to one seat's decisions: safety and acceptance-rule interventions."""

    decisions: int = 0
    safety_clamped_offers: int = 0
    safety_refused_accepts: int = 0
    rule_accept_better: int = 0
    rule_accept_last_turn: int = 0
    rule_accept_final_turn: int = 0
    rule_concede_on_stall: int = 0
    rule_reciprocate: int = 0
    rule_no_retreat: int = 0
    rule_fresh_offer: int = 0
    rule_firm_opening: int = 0
    #: 1 when the seat's request lay outside the calibration map's reachable range.
    outside_reachable: int = 0

    @property
    def safety_interventions(self) -> int:
        return self.safety_clamped_offers + self.safety_refused_accepts

    @property
    def rule_accepts(self) -> int:
        return rule_total(self, ACCEPT_RULES)

    @classmethod
    def total(cls, stats: Sequence[SeatStats]) -> SeatStats:
        """Field-wise sums (``outside_reachable`` then counts seats, not decisions)."""
        return cls(**{f.name: sum(getattr(s, f.name) for s in stats) for f in fields(cls)})


class JanusSeat:
    """One episode seat played by a :class:`JanusAgent` at a fixed requested ρ.

    ``requested_rho`` is what the user asked for; ``dial_rho`` the value fed to the model
    (the calibration map's inverse for the seat's role, or the request itself). With a map,
    the dial is resolved at the seat's first decision, when its role is known (or at once
    when ``role`` is given).
    """

    strict = False  # invalid moves are recorded by the episode loop, not raised

    def __init__(
        self,
        agent: JanusAgent,
        rho: float,
        *,
        channels: str = "both",
        fixed_rho: float = 0.5,
        name: str | None = None,
        calibrated: bool = True,
        role: str | None = None,
    ) -> None:
        if channels not in CHANNELS:
            raise ValueError(f"channels must be one of {CHANNELS}, got {channels!r}")
        self.batch_policy = agent
        self.requested_rho = canonical_rho(rho)
        self.rho = self.requested_rho
        self.fixed_rho = canonical_rho(fixed_rho)
        self.channels = channels
        self.calibration = agent.calibration if calibrated else None
        self.dial_rho: float | None = None if self.calibration is not None else self.rho
        suffix = "" if channels == "both" else f",{channels}"
        self.name = name or f"{agent.label}(rho={self.rho:.2f}{suffix})"
        self.stats = SeatStats()
        if role is not None:
            self.resolve(role)

    def resolve(self, role: str) -> float:
        """Fix the dial value for ``role`` (once; a seat plays one side of one episode)."""
        if self.dial_rho is None:
            assert self.calibration is not None
            value, inside = self.calibration.inverse(self.requested_rho, str(role))
            self.stats.outside_reachable = int(not inside)
            self.dial_rho = canonical_rho(value)
        return self.dial_rho

    def _resolved(self) -> float:
        if self.dial_rho is None:
            raise RuntimeError("the seat's dial is resolved at its first decision (or role=)")
        return self.dial_rho

    def channel_rhos(self, dial: float) -> tuple[float, float]:
        """(text ρ, gate ρ) that play the dial value ``dial`` on this seat's channels: an
        ablated channel stays at ``fixed_rho``."""
        return (
            dial if self.channels in ("both", "text") else self.fixed_rho,
            dial if self.channels in ("both", "weights") else self.fixed_rho,
        )

    @property
    def text_rho(self) -> float:
        return self.channel_rhos(self._resolved())[0]

    @property
    def gate_rho(self) -> float:
        return self.channel_rhos(self._resolved())[1]

    def act(self, observation: Observation) -> Action:
        return self.batch_policy.act_batch([self], [observation])[0]


def _warn_if_map_play_differs(
    calibration: CalibrationMap | None,
    rules: tuple[str, ...],
    price_decoding: str,
    dtype: torch.dtype,
) -> None:
    """A map measures where the dial lands under the rules, the price decoding and the base
    dtype it was swept with; each moves the outcome (benchmarks/RESULTS.md), so the map's
    inverse no longer lands on target. Maps that do not record one (older ones) are trusted
    on it."""
    details = {} if calibration is None else calibration.details
    fitted = details.get("rules")
    if fitted is not None and tuple(fitted) != tuple(rules):
        warnings.warn(
            f"the calibration map was fitted with rules {','.join(fitted) or 'none'}; this agent "
            f"plays {','.join(rules) or 'none'}: calibrated requests may land off target "
            "(--raw plays the raw dial)",
            stacklevel=3,
        )
    decoded = details.get("price_decoding")
    if decoded is not None and decoded != price_decoding:
        warnings.warn(
            f"the calibration map was fitted with price decoding {decoded}; this agent plays "
            f"{price_decoding}: calibrated requests may land off target",
            stacklevel=3,
        )
    swept = details.get("dtype")
    if swept is not None and DTYPES.get(swept) != dtype:
        warnings.warn(
            f"the calibration map was swept with a {swept} base; this agent plays "
            f"{dtype_name(dtype)} (--dtype auto plays the map's): calibrated requests may "
            "land slightly off target",
            stacklevel=3,
        )


class JanusAgent:
    """A model, its tokenizer and the action constraint; answers decisions in batches.

    ``price_step``: offers are rounded to ``low + k * price_step`` of the public range (an
    integer price issue is ``1``), never across the reservation while ``safety`` is on.
    ``threads``: torch's intra-op threads during this agent's calls (``None``: leave torch's
    setting alone, as the evaluation does, which sets them for its whole run).
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        k: int = DEFAULT_K,
        safety: bool = True,
        temperature: float = 0.0,
        seed: int = 0,
        max_batch: int = 256,
        label: str = "janus",
        rules: Sequence[str] | str | None = DEFAULT_RULES,
        calibration: CalibrationMap | None = None,
        prompt_version: int = PROMPT_FORMAT_VERSION,
        price_step: float | None = None,
        threads: int | None = None,
        price_decoding: str = "greedy",
    ) -> None:
        if prompt_version not in PROMPT_VERSIONS:
            raise ValueError(
                f"prompt format version {prompt_version!r} is unknown to this Janus "
                f"(it renders {PROMPT_VERSIONS}): upgrade janus to play this adapter"
            )
        self.prompt_version = prompt_version
        self.price_step = check_price_step(price_step)
        self.threads = check_threads(threads)
        self.model = model.eval()
        self.rules = check_rules(rules)
        self.calibration = calibration
        self.tokenizer = tokenizer
        self.k = k
        self.safety = safety
        self.temperature = temperature
        self.price_decoding = check_price_decoding(price_decoding)
        _warn_if_map_play_differs(
            calibration, self.rules, price_decoding, model.get_input_embeddings().weight.dtype
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.max_batch = max_batch
        self.label = label
        self.has_adapter = is_injected(model)
        vocab = model.get_output_embeddings().weight.shape[0]
        self.constraint = ActionConstraint(tokenizer, vocab)
        self._prompt_cache: dict[str, list[int]] = {}
        #: The seats :meth:`act` plays, one per (requested ρ, role): their counters add up.
        self.act_seats: dict[tuple[float, str], JanusSeat] = {}

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_pretrained(
        cls,
        run_or_adapter_dir: str | Path,
        base_model: str | Path | None = None,
        *,
        device: str = "cpu",
        safety: bool = True,
        temperature: float = 0.0,
        seed: int = 0,
        dtype: str | torch.dtype = "auto",
        rules: Sequence[str] | str | None = DEFAULT_RULES,
        raw: bool = False,
        price_step: float | None = None,
        threads: int | None = None,
        price_decoding: str = "greedy",
    ) -> JanusAgent:
        """Load a trained adapter onto its base (fingerprint checked by the core loader).

        ``dtype`` is the base weights' dtype (see :func:`resolve_dtype`); adapters stay fp32.
        The adapter's calibration map (``calibration.json``) is loaded unless ``raw``.
        ``price_step`` and ``threads``: see :class:`JanusAgent`.
        """
        from janus.checkpoint import load_hyperlora, read_adapter_config

        check_price_decoding(price_decoding)  # a typo is refused before the model loads
        adapter = resolve_adapter_dir(run_or_adapter_dir)
        calibration = None if raw else CalibrationMap.load(adapter)
        torch_dtype = resolve_dtype(dtype, read_adapter_config(adapter), calibration)
        model, tokenizer, config = load_hyperlora(
            adapter, base_model, device=device, torch_dtype=torch_dtype, fuse=True
        )
        return cls(
            model,
            tokenizer,
            k=int(config.get("k", DEFAULT_K)),
            safety=safety,
            temperature=temperature,
            seed=seed,
            rules=rules,
            calibration=calibration,
            # Adapters written before the format was recorded were trained on version 1.
            prompt_version=int(config.get("prompt_format_version", 1)),
            price_step=price_step,
            threads=threads,
            price_decoding=price_decoding,
        )

    @classmethod
    def from_base(
        cls,
        base_model: str | Path,
        *,
        device: str = "cpu",
        safety: bool = True,
        k: int = DEFAULT_K,
        dtype: str | torch.dtype = "float32",
        rules: Sequence[str] | str | None = DEFAULT_RULES,
        price_step: float | None = None,
        threads: int | None = None,
        price_decoding: str = "greedy",
    ) -> JanusAgent:
        """The bare base model with the same prompt and constraint: the no-adapter baseline.

        Give it the adapter agent's dtype (``agent.dtype``) to compare like with like.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from janus.checkpoint import resize_for_tokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(base_model))
        add_special_tokens(tokenizer)
        model = AutoModelForCausalLM.from_pretrained(
            str(base_model), dtype=resolve_dtype(dtype, None)
        )
        resize_for_tokenizer(model, tokenizer)
        return cls(
            model.to(device),
            tokenizer,
            k=k,
            safety=safety,
            label="base",
            rules=rules,
            price_step=price_step,
            threads=threads,
            price_decoding=price_decoding,
        )

    @property
    def dtype(self) -> torch.dtype:
        """The base weights' dtype (adapters are always fp32)."""
        return self.model.get_input_embeddings().weight.dtype

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """A reduced-precision base plays under autocast, as it trained (fp32 adapters, bf16
        matmuls); an fp32 base plays in plain fp32 (``None``)."""
        return None if self.dtype == torch.float32 else self.dtype

    def seat(
        self,
        rho: float,
        *,
        channels: str = "both",
        fixed_rho: float = 0.5,
        name: str | None = None,
        calibrated: bool = True,
        role: str | None = None,
    ) -> JanusSeat:
        """A fresh seat for one episode at this requested ρ (mapped unless ``calibrated=False``)."""
        return JanusSeat(
            self,
            rho,
            channels=channels,
            fixed_rho=fixed_rho,
            name=name,
            calibrated=calibrated,
            role=role,
        )

    # ------------------------------------------------------------------------ acting

    def act(self, observation: Observation, rho: float) -> Action:
        """One decision at ρ, by the agent's seat for this ρ and role (:attr:`act_seats`; one
        per role: a calibrated seat fixes its dial for one side), so counters add up."""
        check_observation(observation, price_step=self.price_step)
        key = (canonical_rho(rho), observation.role.value)
        seat = self.act_seats.get(key)
        if seat is None:
            seat = self.act_seats[key] = self.seat(rho, role=observation.role.value)
        return seat.act(observation)

    @property
    def act_stats(self) -> SeatStats:
        """What happened to every :meth:`act` decision so far (summed over its seats)."""
        return SeatStats.total([seat.stats for seat in self.act_seats.values()])

    def act_batch(
        self, seats: Sequence[JanusSeat], observations: Sequence[Observation]
    ) -> list[Action]:
        """Answer many decisions; one forward pass per chunk of ``max_batch``.

        Every observation is checked first (:func:`janus.observation.check_observation`):
        a bad one raises :class:`janus.observation.ObservationError` before any model work.
        """
        check_observations(observations, price_step=self.price_step, seats=len(seats))
        actions: list[Action] = []
        with torch_threads(self.threads):
            for start in range(0, len(seats), self.max_batch):
                stop = start + self.max_batch
                actions.extend(self._act_chunk(seats[start:stop], observations[start:stop]))
        return actions

    def _decision_rhos(self, seat: JanusSeat, observation: Observation) -> tuple[float, float]:
        """(text ρ, gate ρ) of one decision: the seat's, or the firm end of the dial for
        an opening under ``firm_opening`` (counted on the seat; ablated channels stay fixed)."""
        dial = seat.resolve(observation.role.value)
        firm = opening_rho(observation, self.rules)
        if firm is not None:
            seat.stats.rule_firm_opening += 1
            dial = firm
        return seat.channel_rhos(dial)

    def _encode(self, observation: Observation, text_rho: float) -> list[int]:
        prompt = build_prompt(
            prompt_state(observation), text_rho, self.k, version=self.prompt_version
        )
        ids = self._prompt_cache.get(prompt)
        if ids is None:
            ids = encode_prompt(self.tokenizer, prompt)
            if len(self._prompt_cache) > 100_000:
                self._prompt_cache.clear()
            self._prompt_cache[prompt] = ids
        return ids

    def _decode(self, gate_rhos: Sequence[float], prompts: list[list[int]], offer_only=None):
        scope = None
        if self.has_adapter:
            rhos = torch.tensor(list(gate_rhos), dtype=torch.float32)
            scope = rho_context(self.model, rhos)
        autocast_dtype = self.autocast_dtype
        autocast = (
            torch.autocast(device_type=self.model.device.type, dtype=autocast_dtype)
            if autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            return constrained_decode(
                self.model,
                self.constraint,
                prompts,
                pad_id=self.tokenizer.pad_token_id,
                rho_scope=scope,
                temperature=self.temperature,
                generator=self.generator,
                offer_only=offer_only,
                price=self.price_decoding,
            )

    def _act_chunk(
        self, seats: Sequence[JanusSeat], observations: Sequence[Observation]
    ) -> list[Action]:
        rhos = [self._decision_rhos(s, o) for s, o in zip(seats, observations, strict=True)]
        prompts = [self._encode(o, text) for o, (text, _) in zip(observations, rhos, strict=True)]
        gates = [gate for _, gate in rhos]
        texts = self._decode(gates, prompts)
        parsed = [parse_action(text) for text in texts]
        refused = [
            self.safety
            and p.kind == "ACCEPT"
            and o.standing_offer is not None
            and not o.is_acceptable(o.standing_offer)
            for p, o in zip(parsed, observations, strict=True)
        ]
        if any(refused):
            rows = [i for i, r in enumerate(refused) if r]
            again = self._decode(
                [gates[i] for i in rows], [prompts[i] for i in rows], offer_only=[True] * len(rows)
            )
            for row, text in zip(rows, again, strict=True):
                parsed[row] = parse_action(text)
                seats[row].stats.safety_refused_accepts += 1
        actions = []
        for seat, observation, action in zip(seats, observations, parsed, strict=True):
            seat.stats.decisions += 1
            if action.kind == "ACCEPT":
                actions.append(Action.accept())
                continue
            price = observation.price_range.denorm(action.price_norm)
            if self.safety and not observation.is_acceptable(price):
                price = observation.reservation
                seat.stats.safety_clamped_offers += 1
            for name, move in COUNTER_RULES.items():
                conceded = move(observation, price) if name in self.rules else None
                if conceded is not None:
                    price = conceded
                    setattr(seat.stats, f"rule_{name}", getattr(seat.stats, f"rule_{name}") + 1)
            if self.price_step is not None:
                price = snap_price(price, observation, self.price_step, safe=self.safety)
            rule = acceptance_rule(observation, price, self.rules)
            if rule is not None:
                setattr(seat.stats, f"rule_{rule}", getattr(seat.stats, f"rule_{rule}") + 1)
                actions.append(Action.accept())
                continue
            actions.append(Action.offer(price))
        return actions
