"""The model card (README.md) of an export: what it is, how it was made, how to load it.

Why this exists: an export leaves Janus. Whoever loads it has neither the run directory nor
Janus, so the card carries what they need: the base, the ρ the dial was frozen at, how the
adapter was trained (from the run's own records), the exact prompt format and token rule,
and loading code. The PEFT and merged snippets are executed by the tests from a copy of the
export directory with Janus unimportable; the vLLM snippet is text only (vLLM is not a
dependency of Janus and was never run against it), and the card says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from janus.prompt import OUTPUT_PATTERN

#: The training options shown in the card (the whole config is in janus_export.json).
TRAINING_KEYS = (
    "data",
    "extra_data",
    "max_steps",
    "batch_size",
    "grad_accum",
    "lr",
    "warmup",
    "lambda_sep",
    "sep_margin",
    "k",
    "include_failures",
    "bf16",
    "seed",
)
REFINE_KEYS = ("run", "rounds", "mode", "episodes", "steps", "mix", "epsilon", "seed")


@dataclass(frozen=True)
class CardFacts:
    """Everything the card states; :mod:`janus.export` gathers it from the run."""

    format: str  # "peft" or "merged"
    rho: float
    base: str  # the base as recorded by training (an absolute directory or a hub id)
    base_is_local: bool
    architecture: str
    dtype: str
    rank: int
    alpha: float
    targets: tuple[str, ...]
    special_tokens: tuple[str, ...]
    token_rows: int  # embedding rows the adapter carries (trained tokens + added rows)
    resize_to: int | None  # the embedding size a base must be resized to (PEFT), or None
    adds_bos: bool
    example_prompt: str
    source: str  # the adapter directory it came from
    janus_version: str
    training: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] | None = None
    best: Mapping[str, Any] | None = None
    refine: Mapping[str, Any] | None = None
    selection: Mapping[str, Any] | None = None
    calibration: Mapping[str, float] | None = None  # role -> mean achieved ρ at this dial


def _front_matter(facts: CardFacts) -> list[str]:
    library = "peft" if facts.format == "peft" else "transformers"
    lines = ["---", f"library_name: {library}"]
    if not facts.base_is_local:
        lines.append(f"base_model: {facts.base}")
    lines += ["tags: [janus, negotiation, lora, hyperlora]", "---", ""]
    return lines


def _what(facts: CardFacts) -> list[str]:
    kind = "a PEFT LoRA adapter" if facts.format == "peft" else "a plain transformers model"
    rows = f"{facts.token_rows} token rows" if facts.token_rows else "no token rows"
    return [
        f"# Janus at ρ = {facts.rho:.2f} ({kind})",
        "",
        "One point of a Janus HyperLoRA dial: ρ ∈ [0, 1] is where in the zone of possible",
        "agreement a negotiated price should land (0 favours the buyer, 1 the seller). Janus",
        "feeds ρ to the gates of every adapted layer; this export froze them at",
        f"ρ = {facts.rho:.2f}. The prompt must still show the same value",
        f"(`<RHO> {facts.rho:.2f}`): ρ reaches the model twice, and the two must agree.",
        "",
        "| | |",
        "|---|---|",
        f"| base model | `{facts.base}` ({facts.architecture}, weights {facts.dtype}) |",
        f"| ρ | {facts.rho:.2f} |",
        f"| adapter | LoRA r = {facts.rank}, α = {facts.alpha:g} on "
        f"{len(facts.targets)} layers, {rows} |",
        f"| added tokens | {' '.join(f'`{t}`' for t in facts.special_tokens)} |",
        f"| made by | janus {facts.janus_version} from `{facts.source}` |",
        "",
    ]


def _table(title: str, values: Mapping[str, Any], keys: tuple[str, ...] | None = None) -> list[str]:
    chosen = [k for k in (keys or tuple(values)) if values.get(k) is not None]
    if not chosen:
        return []
    rows = [f"| {k} | {json.dumps(values[k], ensure_ascii=False)} |" for k in chosen]
    return [f"{title}:", "", "| option | value |", "|---|---|", *rows, ""]


def _training(facts: CardFacts) -> list[str]:
    lines = ["## How it was trained", ""]
    lines += [
        "Behaviour cloning of scripted negotiations labelled with the ρ each one reached,",
        "through a ρ-conditioned hypernetwork per layer, with a gate-separation loss",
        "(`janus train`; the whole training config is in `janus_export.json`).",
        "",
    ]
    lines += _table("Training run", facts.training, TRAINING_KEYS)
    if facts.training.get("bf16"):
        lines += [
            "Trained with a bf16 base under autocast, and Janus plays it that way. The code",
            f"below loads the base in its stored dtype ({facts.dtype} here): its logits match",
            "Janus playing in that dtype, and differ from bf16 play by bf16 rounding.",
            "",
        ]
    if facts.data:
        lines += _table("Rows per epoch (the run's data.json)", facts.data)
    if facts.best:
        lines += _table("Best validation (the run's best.json)", facts.best)
    if facts.refine:
        lines += [
            "Then refined on its own games (`janus refine`): rounds of rollouts against the",
            "training pool, relabelled and mixed with the scripted data.",
            "",
        ]
        lines += _table("Refinement", facts.refine, REFINE_KEYS)
    if facts.selection:
        kept = ("chosen_round", "criterion")
        lines += _table("Round kept (selection.json)", facts.selection, kept)
        if facts.selection.get("chosen_round") == 0:
            lines += ["Round 0 is the starting adapter: no refinement round improved on it.", ""]
    if facts.calibration:
        per_role = ", ".join(f"{v:.2f} as {role}" for role, v in sorted(facts.calibration.items()))
        lines += [
            f"Set to {facts.rho:.2f}, the dial's average outcome against in-pool opponents (the",
            f"adapter's calibration map) was ρ ≈ {per_role}. This export is the raw dial: the",
            "map is per role and is not applied. To land at ρ* on average as one side, export",
            "the dial value the map gives for that side (`janus play` prints it).",
            "",
        ]
    return lines


def _prompt(facts: CardFacts) -> list[str]:
    bos = "BOS + " if facts.adds_bos else ""
    return [
        "## The prompt",
        "",
        "The canonical Janus prompt, one decision per prompt (here a seller with reservation",
        "600 at turn 3 of 20; prices are normalised against the public range,",
        "(p − 200) / 1300 by default, the history is the last k offers front-padded with",
        "`PAD:0.0000`, `NONE` when no offer stands):",
        "",
        "```text",
        facts.example_prompt,
        "```",
        "",
        f"Token ids: {bos}the prompt's ids with `add_special_tokens=False`. The answer follows",
        f"`<OUTPUT>` directly and is one of `{OUTPUT_PATTERN.pattern}` (the price normalised).",
        "Janus decodes greedily under exactly that grammar; plain greedy decoding may leave it.",
        "",
    ]


def _ids_line(facts: CardFacts) -> str:
    plain = "tokenizer(prompt, add_special_tokens=False).input_ids"
    ids = f"[tokenizer.bos_token_id] + {plain}" if facts.adds_bos else plain
    return f"input_ids = torch.tensor([{ids}])"


def _peft_snippet(facts: CardFacts) -> list[str]:
    lines = [
        "## Load with PEFT",
        "",
        "Run from this directory (or set `EXPORT` to its path); nothing else of the run is",
        "needed, only the base model.",
        "",
        "```python",
        "import torch",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        'EXPORT = "."  # this directory',
        f"BASE = {json.dumps(facts.base)}  # the base the adapter was trained on",
        "",
        "tokenizer = AutoTokenizer.from_pretrained(EXPORT)",
        "base = AutoModelForCausalLM.from_pretrained(BASE)",
    ]
    if facts.resize_to is not None:
        lines += [
            "# Room for the added tokens; their rows (any init will do) come from the adapter.",
            f"base.resize_token_embeddings({facts.resize_to}, mean_resizing=False)",
        ]
    lines += ["model = PeftModel.from_pretrained(base, EXPORT).eval()", *_run_lines(facts)]
    return lines


def _merged_snippet(facts: CardFacts) -> list[str]:
    return [
        "## Load with transformers",
        "",
        "Run from this directory (or set `EXPORT` to its path): the model is self-contained.",
        "",
        "```python",
        "import torch",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        'EXPORT = "."  # this directory',
        "",
        "tokenizer = AutoTokenizer.from_pretrained(EXPORT)",
        "model = AutoModelForCausalLM.from_pretrained(EXPORT).eval()",
        *_run_lines(facts),
    ]


def _run_lines(facts: CardFacts) -> list[str]:
    prompt = json.dumps(facts.example_prompt, ensure_ascii=False)
    return [
        f"prompt = {prompt}",
        _ids_line(facts),
        "with torch.no_grad():",
        "    logits = model(input_ids).logits",
        "    answer = model.generate(input_ids, max_new_tokens=8, do_sample=False)",
        "print(tokenizer.decode(answer[0, input_ids.shape[1]:], skip_special_tokens=True))",
        "```",
        "",
    ]


def _lora_rank_slot(rank: int) -> int:
    """The smallest of vLLM's LoRA rank slots that holds ``rank``."""
    return next((slot for slot in (8, 16, 32, 64, 128, 256, 512) if slot >= rank), rank)


def _vllm_snippet(facts: CardFacts) -> list[str]:
    common = [
        "## Serve with vLLM (not tested)",
        "",
        "vLLM is not a dependency of Janus and was not installed where this card was written:",
        "the snippet below was never run. It uses vLLM's documented offline API; check it",
        "against your vLLM version.",
        "",
        "```python",
        "from vllm import LLM, SamplingParams",
    ]
    regex = OUTPUT_PATTERN.pattern
    tail = [
        f"prompt = {json.dumps(facts.example_prompt, ensure_ascii=False)}",
        "params = SamplingParams(temperature=0.0, max_tokens=8)",
        "# Janus's grammar, for vLLM's structured outputs (the option's name depends on the",
        f"# version): {regex}",
    ]
    if facts.format == "merged":
        return [
            *common,
            "",
            'llm = LLM(model=".")  # this directory: weights and tokenizer',
            *tail,
            "outputs = llm.generate([prompt], params)",
            "print(outputs[0].outputs[0].text)",
            "```",
            "",
        ]
    return [
        *common,
        "from vllm.lora.request import LoRARequest",
        "",
        f'llm = LLM(model={json.dumps(facts.base)}, tokenizer=".", enable_lora=True,',
        f"          max_lora_rank={_lora_rank_slot(facts.rank)})",
        *tail,
        f'request = LoRARequest("janus-rho-{facts.rho:.2f}", 1, ".")',
        "outputs = llm.generate([prompt], params, lora_request=request)",
        "print(outputs[0].outputs[0].text)",
        "```",
        "",
        f"This adapter also carries {facts.token_rows} embedding rows through PEFT's",
        "`trainable_token_indices`; a LoRA server that does not apply them sees the base's",
        "rows for the added tokens instead and plays a different model. If yours does not,",
        "serve the merged export (`janus export --format merged`), which needs no adapter",
        "support.",
        "",
    ]


def render_card(facts: CardFacts) -> str:
    """The README.md of an export."""
    if facts.format not in ("peft", "merged"):
        raise ValueError(f"card format must be peft or merged, got {facts.format!r}")
    snippet = _peft_snippet(facts) if facts.format == "peft" else _merged_snippet(facts)
    lines = [
        *_front_matter(facts),
        *_what(facts),
        *_training(facts),
        *_prompt(facts),
        *snippet,
        *_vllm_snippet(facts),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"
