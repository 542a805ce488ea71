"""``janus export``: one point of the dial as a directory that stands alone.

Why this exists: an export is what leaves Janus — for PEFT, for a LoRA server, for a plain
transformers pipeline. It must load with nothing of the run: the adapter (or the merged
weights), the tokenizer with the prompt's added tokens, and a model card (:mod:`janus.card`)
that says what it is, how it was trained (read from the run's own records) and how to load
it. Both formats are written atomically (complete or absent) through :mod:`janus.atomic`;
``janus_export.json`` records the provenance in full.

ρ is quantised once, as everywhere in Janus (:func:`janus.prompt.canonical_rho`): the gates
are frozen at the value the prompt will show.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from janus import __version__
from janus.atomic import atomic_directory
from janus.base_model import locate_base_model
from janus.card import CardFacts, render_card
from janus.checkpoint import (
    BASE_VOCAB_ATTR,
    CONFIG_FILE,
    load_hyperlora,
    require_injected,
    write_json,
)
from janus.domain import MAX_TURNS, Observation, Offer, PriceRange, Role
from janus.hyperlora import (
    HyperLoRAConfig,
    HyperLoRALinear,
    TrainableTokenEmbedding,
    iter_hyperlora_layers,
    normalise_rho,
    output_head,
)
from janus.prompt import DEFAULT_K, SPECIAL_TOKENS, build_prompt, canonical_rho

FORMATS = ("merged", "peft")
CARD_FILE = "README.md"
PEFT_STATE_FILE = "adapter_model.safetensors"
EXPORT_FILE = "janus_export.json"
"""What an export records of where it came from (ρ, janus version, the adapter's config)."""


@dataclass(frozen=True)
class ExportResult:
    """Where the export went, in which format, at which (canonical) ρ."""

    path: Path
    format: str
    rho: float


def export_rho(rho: float) -> float:
    """The ρ an export freezes: canonical (2 decimals) and inside [0, 1]."""
    value = canonical_rho(rho)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"--rho {rho!r}: an export freezes a ρ in [0, 1]")
    return value


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    return data if isinstance(data, dict) else None


def run_records(adapter: Path) -> dict[str, dict[str, Any] | None]:
    """The run's own records beside an adapter directory (``None`` where absent).

    A run's adapter is ``RUN/adapter``: the trainer writes ``data.json`` and ``best.json``
    into ``RUN``, a refinement ``refine_config.json`` and ``selection.json``.
    """
    from janus.refine import CONFIG_FILE as REFINE_FILE
    from janus.refine import SELECTION_FILE
    from janus.train import DATA_FILE
    from janus.training.checkpoints import BEST_FILE

    run = adapter.parent
    names = {"data": DATA_FILE, "best": BEST_FILE, "refine": REFINE_FILE}
    records = {key: _read_json(run / name) for key, name in names.items()}
    records["selection"] = _read_json(run / SELECTION_FILE)
    return records


def _example_prompt(rho: float, k: int, version: int) -> str:
    """A seller (reservation 600) at turn 3, after its own 1200 and the buyer's 500, in the
    prompt format the adapter was trained with."""
    from janus.agent import prompt_state

    history = (Offer(Role.SELLER, 1200.0, 1), Offer(Role.BUYER, 500.0, 2))
    observation = Observation(Role.SELLER, 600.0, PriceRange(), 3, MAX_TURNS, 500.0, history)
    return build_prompt(prompt_state(observation), rho, k, version=version)


def _calibration_at(adapter: Path, rho: float) -> dict[str, float] | None:
    from janus.calibration import CalibrationMap

    calibration = CalibrationMap.load(adapter)
    if calibration is None:
        return None
    return {role: curve.forward(rho) for role, curve in calibration.curves.items()}


def _facts(
    model,
    tokenizer,
    config: dict[str, Any],
    *,
    format: str,
    rho: float,
    base: Path | str,
    adapter: Path,
    records: dict[str, dict[str, Any] | None],
) -> CardFacts:
    """What the card states, read from the loaded model, its config and the run's records."""
    from janus.examples import adds_bos

    hyper = model.hyperlora_config
    indices, _ = peft_token_rows(model)
    embedding_rows = model.get_input_embeddings().weight.shape[0]
    base_vocab = getattr(model.config, BASE_VOCAB_ATTR, None) or embedding_rows
    first = next(iter(indices.values()), []) if indices else []
    return CardFacts(
        format=format,
        rho=rho,
        base=str(base),
        base_is_local=isinstance(base, Path),
        architecture=type(model).__name__,
        dtype=str(model.get_input_embeddings().weight.dtype).removeprefix("torch."),
        rank=hyper.rank,
        alpha=hyper.alpha,
        targets=tuple(config["adapted_modules"]),
        special_tokens=tuple(config.get("special_tokens") or SPECIAL_TOKENS),
        token_rows=len(first) if format == "peft" else len(hyper.trainable_token_ids),
        resize_to=embedding_rows if embedding_rows > base_vocab else None,
        adds_bos=adds_bos(tokenizer),
        example_prompt=_example_prompt(
            rho, int(config.get("k", DEFAULT_K)), int(config.get("prompt_format_version", 1))
        ),
        source=str(adapter),
        janus_version=__version__,
        training=config.get("train_config") or {},
        data=records["data"],
        best=records["best"],
        refine=records["refine"],
        selection=records["selection"],
        calibration=_calibration_at(adapter, rho),
    )


def _check_target(out: Path, marker: str) -> None:
    """Refuse a wrong ``--out`` before minutes of loading, not after (atomic_directory
    checks again when it writes)."""
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / marker).is_file())):
        raise FileExistsError(f"refusing to replace {out}: it is not a Janus export directory")


def write_export(
    path: str | os.PathLike[str],
    weights: Callable[[Path], None],
    *,
    tokenizer: Any,
    record: dict[str, Any],
    files: dict[str, str] | None = None,
) -> Path:
    """Write an export directory atomically: ``weights(tmp)``, the tokenizer, the provenance
    record (:data:`EXPORT_FILE`) and any extra text ``files`` (the model card).

    Only an earlier export is replaced: never a training adapter (it has adapter_config.json
    too), so a wrong ``--out`` cannot clobber the run it came from.
    """

    def write(tmp: Path) -> None:
        weights(tmp)
        tokenizer.save_pretrained(str(tmp))
        write_json(tmp / EXPORT_FILE, record)
        for name, text in (files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")

    return atomic_directory(
        Path(path),
        write,
        replaceable=lambda p: not any(p.iterdir()) or (p / EXPORT_FILE).is_file(),
        what=f"export directory (no {EXPORT_FILE})",
    )


def peft_token_rows(model: nn.Module) -> tuple[dict[str, list[int]], dict[str, Tensor]]:
    """The embedding (and untied head) rows a PEFT adapter must carry to stand alone.

    PEFT's trainable tokens *replace* rows (they are not deltas), so the adapter carries the
    value of every row that differs from what a user's own resize gives: the trained token
    rows, and every row past the base's original vocabulary (Janus fills those with the
    mean row, ``resize_token_embeddings`` with random ones). An untied output head gets its
    added rows too; a tied one follows the embedding inside PEFT.
    """
    embedding = model.get_input_embeddings()
    frozen = embedding.weight  # a TrainableTokenEmbedding's is its frozen base weight
    weight = frozen.detach().to(torch.float32).clone()
    trained = embedding.token_ids.tolist() if isinstance(embedding, TrainableTokenEmbedding) else []
    if trained:
        weight[embedding.token_ids] = embedding.token_rows.detach().to(torch.float32)
    base_vocab = getattr(model.config, BASE_VOCAB_ATTR, None) or weight.shape[0]
    added = list(range(base_vocab, weight.shape[0]))
    ids = list(dict.fromkeys([*trained, *added]))
    if not ids:
        return {}, {}
    names = {id(module): name for name, module in model.named_modules()}
    indices, rows = {names[id(embedding)]: ids}, {names[id(embedding)]: weight[ids]}
    head = output_head(model)
    if head is not None and head.weight is not frozen and added:
        indices[names[id(head)]] = added
        rows[names[id(head)]] = head.weight.detach()[added].to(torch.float32)
    tensors = {f"{n}.token_adapter.trainable_tokens_delta": r.cpu() for n, r in rows.items()}
    return indices, tensors


def _peft_fan_in_fan_out(layers: list[tuple[str, HyperLoRALinear]]) -> bool:
    """The adapter's one ``fan_in_fan_out`` (Conv1D layers store their weight transposed).

    PEFT has a single flag per adapter, so a model mixing Linear and Conv1D cannot be exported.
    """
    transposed = {layer.fan_in_fan_out for _, layer in layers}
    if len(transposed) > 1:
        raise ValueError("PEFT has one fan_in_fan_out per adapter: cannot mix Linear and Conv1D")
    return transposed == {True}


def _peft_tensors(
    model: nn.Module, layers: list[tuple[str, HyperLoRALinear]], rho: float
) -> tuple[dict[str, Tensor], dict[str, list[int]]]:
    """The adapter's tensors under PEFT's names, with the gate at ``rho`` folded into A
    (``A' = diag(g(ρ)) A``; B unchanged), and the token rows' indices per module."""
    prefix = "base_model.model."
    tensors: dict[str, Tensor] = {}
    with torch.no_grad():
        for name, layer in layers:
            gate = layer.gate(rho)[0]
            tensors[f"{prefix}{name}.lora_A.weight"] = (gate.unsqueeze(-1) * layer.lora_A).cpu()
            tensors[f"{prefix}{name}.lora_B.weight"] = layer.lora_B.detach().cpu().clone()
        token_indices, token_tensors = peft_token_rows(model)
    tensors.update({f"{prefix}{key}": tensor for key, tensor in token_tensors.items()})
    return tensors, token_indices


def _peft_config(
    config: HyperLoRAConfig,
    targets: list[str],
    *,
    fan_in_fan_out: bool,
    base_name: str | None,
    token_indices: dict[str, list[int]],
) -> dict[str, Any]:
    """PEFT's ``adapter_config.json`` for the folded adapter: a plain LoRA for inference."""
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": config.rank,
        "lora_alpha": config.alpha,
        "lora_dropout": 0.0,
        "target_modules": targets,
        "fan_in_fan_out": fan_in_fan_out,
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "inference_mode": True,
        "base_model_name_or_path": base_name,
        "trainable_token_indices": token_indices or None,
    }


def export_peft(
    model: nn.Module,
    rho: float,
    path: str | os.PathLike[str],
    *,
    tokenizer: Any,
    base_model_name_or_path: str | None = None,
    files: dict[str, str] | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write a standard PEFT LoRA adapter that behaves like the HyperLoRA model at ``rho``.

    The gate is folded into A (``A' = diag(g(ρ)) A``; B, r and α unchanged), so any LoRA
    server can serve this one point of the dial. Token rows go through PEFT's
    ``trainable_token_indices`` (:func:`peft_token_rows`): resize the base to the embedding
    size first (any resize: the rows come from the adapter); servers without trainable
    tokens need the merged model (:func:`janus.hyperlora.merge_at_rho`). The tokenizer is
    written beside the adapter (without its added tokens it cannot be prompted); ``files``
    are extra text files (the card), ``provenance`` extra keys of ``janus_export.json``.
    """
    config = require_injected(model)
    if tokenizer is None:
        raise ValueError("export_peft needs the adapter's tokenizer (it carries the added tokens)")
    value = normalise_rho(rho)
    if not isinstance(value, float):
        raise ValueError("export_peft takes a single ρ (a float)")
    layers = list(iter_hyperlora_layers(model))
    fan_in_fan_out = _peft_fan_in_fan_out(layers)
    tensors, token_indices = _peft_tensors(model, layers, value)
    peft_config = _peft_config(
        config,
        [name for name, _ in layers],
        fan_in_fan_out=fan_in_fan_out,
        base_name=base_model_name_or_path or getattr(model.config, "_name_or_path", None) or None,
        token_indices=token_indices,
    )
    record = {
        **(provenance or {}),
        "format": "peft",
        "rho": value,
        "janus_version": __version__,
        "hyperlora": config.to_dict(),
    }

    def weights(tmp: Path) -> None:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / PEFT_STATE_FILE))
        write_json(tmp / CONFIG_FILE, peft_config)

    return write_export(path, weights, tokenizer=tokenizer, record=record, files=files)


def export_merged(
    model,
    tokenizer,
    rho: float,
    path: str | os.PathLike[str],
    *,
    files: dict[str, str] | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Fold the dial at ``rho`` into the weights and write a plain model with its tokenizer.

    The model is merged in place (it is no longer a HyperLoRA model afterwards).
    """
    from janus.hyperlora import merge_at_rho

    merged = merge_at_rho(model, rho, keep_original=False)
    record = {**(provenance or {}), "format": "merged", "rho": rho, "janus_version": __version__}

    return write_export(
        path, merged.save_pretrained, tokenizer=tokenizer, record=record, files=files
    )


def export_adapter(
    run: str | os.PathLike[str],
    rho: float,
    out: str | os.PathLike[str],
    *,
    format: str = "merged",
    base_model: str | os.PathLike[str] | None = None,
) -> ExportResult:
    """Export a run (or adapter directory) at ``rho``: a merged model or a PEFT adapter.

    Either way the directory holds the tokenizer, ``README.md`` (the model card, with loading
    code) and ``janus_export.json``; nothing of the run is needed to load it.
    """
    from janus.agent import resolve_adapter_dir
    from janus.checkpoint import read_adapter_config

    if format not in FORMATS:
        raise ValueError(f"--format must be 'merged' or 'peft', got {format!r}")
    value = export_rho(rho)
    out = Path(out).expanduser()
    _check_target(out, EXPORT_FILE)
    adapter = resolve_adapter_dir(run)
    recorded = read_adapter_config(adapter)["base_model_name_or_path"]
    base = locate_base_model(base_model if base_model is not None else recorded)
    records = run_records(adapter)
    model, tokenizer, config = load_hyperlora(adapter, base)
    facts = _facts(
        model,
        tokenizer,
        config,
        format=format,
        rho=value,
        base=base,
        adapter=adapter,
        records=records,
    )
    files = {CARD_FILE: render_card(facts)}
    provenance = {
        "source_adapter": str(adapter),
        "base_model_name_or_path": str(base),
        "base_fingerprint": config["base_fingerprint"],
        "train_config": config.get("train_config"),
        "run_records": records,
        "calibration_at_rho": facts.calibration,
    }
    if format == "peft":
        path = export_peft(
            model,
            value,
            out,
            tokenizer=tokenizer,
            base_model_name_or_path=str(base),
            files=files,
            provenance=provenance,
        )
    else:
        path = export_merged(model, tokenizer, value, out, files=files, provenance=provenance)
    return ExportResult(path=path, format=format, rho=value)
