"""Saving and loading HyperLoRA adapters, safely.

A checkpoint is a directory holding ``adapter_state.safetensors`` (the adapter's parameters
only, trained token rows included), ``adapter_config.json`` (every hyperparameter needed to
rebuild the adapter, the base model's name and fingerprint, the janus version, a checksum of
the state file) and the tokenizer files. Saving is atomic; loading refuses a base model other
than the one the adapter was trained on (the research code never checked), and never unpickles
arbitrary objects. Exports (a PEFT LoRA adapter or a merged model at one fixed ρ) live in
:mod:`janus.export`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save_file
from torch import Tensor, nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from janus import __version__
from janus.atomic import atomic_directory
from janus.base_model import locate_base_model
from janus.hyperlora import (
    HyperLoRAConfig,
    adapter_parameters,
    adapter_state_dict,
    inject_hyperlora,
    is_injected,
    is_merged,
    iter_hyperlora_layers,
    load_adapter_state_dict,
    output_head,
)

STATE_FILE = "adapter_state.safetensors"
CONFIG_FILE = "adapter_config.json"
FORMAT = "janus-hyperlora"
FORMAT_VERSION = 1
BASE_VOCAB_ATTR = "janus_base_vocab_size"
"""Config attribute recording the vocabulary size of the base before any resize."""

_STRUCTURE_FIELDS = ("architecture", "model_type", "hidden_size", "num_layers", "vocab_size")
_RESERVED_KEYS = {
    "format",
    "format_version",
    "janus_version",
    "base_model_name_or_path",
    "base_fingerprint",
    "adapter_state_sha256",
    "adapted_modules",
    *HyperLoRAConfig.__dataclass_fields__,
}


# --------------------------------------------------------------------------------------------
# Base model: resize and fingerprint
# --------------------------------------------------------------------------------------------


def resize_for_tokenizer(model: PreTrainedModel, tokenizer: Any) -> int:
    """Grow the embeddings (never shrink them) to the tokenizer's length, deterministically.

    New rows are the mean of the old rows, with no noise: training and every later load give
    the same rows, so even untrained new tokens embed identically after a reload. The original
    vocabulary size is recorded on ``model.config`` (``janus_base_vocab_size``) for the base
    fingerprint. Call it before :func:`janus.hyperlora.inject_hyperlora`; returns the new size.
    """
    if is_injected(model):
        raise ValueError("resize the embeddings before inject_hyperlora, not after")
    size = len(tokenizer)
    embedding = model.get_input_embeddings()
    old = embedding.weight.shape[0]
    if size <= old:
        return old
    if getattr(model.config, BASE_VOCAB_ATTR, None) is None:
        setattr(model.config, BASE_VOCAB_ATTR, old)
    head = output_head(model)
    tied = head is not None and head.weight is embedding.weight
    model.resize_token_embeddings(size, mean_resizing=False)
    layers = [model.get_input_embeddings()] + ([] if tied or head is None else [output_head(model)])
    with torch.no_grad():
        for layer in layers:
            weight = layer.weight
            weight[old:] = weight[:old].to(torch.float32).mean(dim=0).to(weight.dtype)
            bias = getattr(layer, "bias", None)
            if bias is not None:
                bias[old:] = 0
    return size


def _fingerprint_tensors(model: nn.Module, count: int = 2) -> list[tuple[str, Tensor]]:
    """The first ``count`` 2-d base weights, skipping adapters and the (resizable) embeddings.

    Names are those of the plain model (the ``.base_layer`` of a wrapper is dropped), so an
    injected model and its bare base give the same fingerprint.
    """
    skip = {id(p) for p in adapter_parameters(model).values()}
    skip.add(id(model.get_input_embeddings().weight))
    head = output_head(model)
    if head is not None:
        skip.add(id(head.weight))
    chosen: list[tuple[str, Tensor]] = []
    for name, param in model.named_parameters():
        if id(param) in skip or param.dim() != 2:
            continue
        chosen.append((name.replace(".base_layer.", "."), param.detach()))
        if len(chosen) == count:
            break
    return chosen


def base_fingerprint(model: nn.Module) -> dict[str, Any]:
    """Identify the base model: its structure, and a short hash of a few of its weights.

    The hash (sha256 of the float32 bytes of the first two non-embedding weight matrices)
    tells apart two bases of the same shape. A handful of probe values are kept too, so that
    the same base loaded in another dtype (bf16 instead of fp32) can still be recognised.
    """
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    tensors = _fingerprint_tensors(model)
    digest = hashlib.sha256()
    probe: list[float] = []
    for name, tensor in tensors:
        values = tensor.to(device="cpu", dtype=torch.float32).contiguous()
        digest.update(name.encode())
        digest.update(values.numpy().tobytes())
        flat = values.reshape(-1)
        index = torch.linspace(0, flat.numel() - 1, 8).round().long()
        probe.extend(float(f"{v:.6g}") for v in flat[index].tolist())
    vocab = getattr(config, BASE_VOCAB_ATTR, None) or getattr(text, "vocab_size", None)
    return {
        "architecture": type(model).__name__,
        "model_type": getattr(config, "model_type", None),
        "hidden_size": getattr(text, "hidden_size", None),
        "num_layers": getattr(text, "num_hidden_layers", None),
        "vocab_size": vocab,
        "weights": [name for name, _ in tensors],
        "weights_sha256": digest.hexdigest()[:16],
        "weights_dtype": str(tensors[0][1].dtype).removeprefix("torch.") if tensors else None,
        "weights_probe": probe,
    }


def fingerprint_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between two fingerprints ([] when they name the same base).

    Same dtype: the weight hashes must be equal. Different dtypes (an fp32 base loaded in
    bf16): the probe values must agree to 1% instead, which still tells random bases apart.
    """
    diffs = [
        f"{key} {saved.get(key)!r} vs {current.get(key)!r}"
        for key in _STRUCTURE_FIELDS
        if saved.get(key) != current.get(key)
    ]
    if saved.get("weights_dtype") == current.get("weights_dtype"):
        same_weights = saved.get("weights_sha256") == current.get("weights_sha256")
    else:
        a, b = saved.get("weights_probe") or [], current.get("weights_probe") or []
        same_weights = len(a) == len(b) > 0 and all(
            abs(x - y) <= 1e-2 * abs(x) + 1e-6 for x, y in zip(a, b, strict=True)
        )
    if not same_weights:
        diffs.append(
            f"weights_sha256 {saved.get('weights_sha256')!r} ({saved.get('weights_dtype')}) "
            f"vs {current.get('weights_sha256')!r} ({current.get('weights_dtype')})"
        )
    return diffs


# --------------------------------------------------------------------------------------------
# Atomic directories and small file helpers
# --------------------------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_json(path: Path, data: dict[str, Any]) -> None:
    """One JSON layout (sorted keys, indented, UTF-8) for every config a checkpoint or an
    export writes, so their files diff cleanly."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", "utf-8")


def _atomic_directory(target: Path, write: Callable[[Path], None]) -> Path:
    """Atomic adapter write: an existing target is replaced only if it is an adapter directory.

    If a crash falls between the two renames of the swap, :func:`load_hyperlora` names the
    left-over copy.
    """
    return atomic_directory(
        target,
        write,
        replaceable=lambda path: not any(path.iterdir()) or (path / CONFIG_FILE).is_file(),
        what=f"adapter directory (no {CONFIG_FILE})",
    )


def require_injected(model: nn.Module) -> HyperLoRAConfig:
    """The model's adapter config, or a one-line error that says why there is none."""
    config = getattr(model, "hyperlora_config", None)
    if config is None:
        hint = " (it was merged: unmerge(model) first)" if is_merged(model) else ""
        raise ValueError(f"this model has no HyperLoRA adapter{hint}")
    return config


# --------------------------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------------------------


def save_hyperlora_adapter(
    model: nn.Module,
    tokenizer: Any,
    path: str | os.PathLike[str],
    *,
    base_model_name_or_path: str | os.PathLike[str],
    extra_config: dict[str, Any] | None = None,
) -> Path:
    """Save the adapter, its config, the base fingerprint and the tokenizer, atomically.

    ``extra_config`` (e.g. special tokens, prompt format version) is merged into
    adapter_config.json; it may not override the adapter's own keys. Returns the directory.
    """
    config = require_injected(model)
    if tokenizer is None:
        raise ValueError("a checkpoint needs its tokenizer: pass the one used for training")
    extra = dict(extra_config or {})
    clash = sorted(_RESERVED_KEYS & extra.keys())
    if clash:
        raise ValueError(f"extra_config may not override adapter keys {clash}")
    state = adapter_state_dict(model)
    payload: dict[str, Any] = {
        **extra,
        **config.to_dict(),
        "adapted_modules": [name for name, _ in iter_hyperlora_layers(model)],
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "janus_version": __version__,
        "base_model_name_or_path": str(base_model_name_or_path),
        "base_fingerprint": base_fingerprint(model),
    }

    def write(tmp: Path) -> None:
        save_file(state, str(tmp / STATE_FILE), metadata={"format": "pt"})
        payload["adapter_state_sha256"] = _sha256_file(tmp / STATE_FILE)
        write_json(tmp / CONFIG_FILE, payload)
        tokenizer.save_pretrained(str(tmp))

    return _atomic_directory(Path(path), write)


def read_adapter_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """adapter_config.json of a checkpoint, checked to be a Janus HyperLoRA config."""
    directory = Path(path).expanduser()
    file = directory / CONFIG_FILE
    if not file.is_file():
        leftovers = sorted(directory.parent.glob(f".{directory.name}.old-*"))
        hint = (
            f"; an interrupted save left the previous checkpoint at {leftovers[-1]}"
            if leftovers
            else ""
        )
        raise FileNotFoundError(f"{file} is missing: not a HyperLoRA checkpoint{hint}")
    try:
        data = json.loads(file.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{file} is corrupted (not valid JSON: {error})") from error
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{file} is not a Janus HyperLoRA adapter config (format != {FORMAT!r})")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"{file} has format version {data['format_version']}; this janus ({__version__}) "
            f"reads up to {FORMAT_VERSION}"
        )
    missing = [
        k for k in ("target_modules", "adapted_modules", "base_fingerprint") if k not in data
    ]
    if missing:
        raise ValueError(f"{file} lacks required keys {missing}")
    return data


def _read_state(directory: Path, config: dict[str, Any]) -> dict[str, Tensor]:
    """The adapter tensors, their checksum verified against adapter_config.json."""
    file = directory / STATE_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing")
    data = file.read_bytes()
    expected = config.get("adapter_state_sha256")
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise ValueError(
            f"{file} is corrupted or was modified: its sha256 differs from the one "
            f"recorded in {CONFIG_FILE}"
        )
    try:
        return load_safetensors_bytes(data)
    except Exception as error:
        raise ValueError(
            f"{file} is corrupted (not a readable safetensors file: {error})"
        ) from error


def _load_base(source: Any, torch_dtype: torch.dtype | None) -> tuple[PreTrainedModel, str]:
    """The base model and a description of where it came from.

    A reference is located by :func:`janus.base_model.locate_base_model`: a local directory
    loads with ``local_files_only`` (never a download), a missing local path is an error.
    """
    if isinstance(source, nn.Module):
        if torch_dtype is not None:
            source.to(torch_dtype)
        return source, str(getattr(source.config, "_name_or_path", "") or "<model object>")
    location = locate_base_model(source)
    kwargs: dict[str, Any] = {} if torch_dtype is None else {"dtype": torch_dtype}
    if isinstance(location, Path):
        kwargs["local_files_only"] = True
    return AutoModelForCausalLM.from_pretrained(location, **kwargs), str(location)


def load_hyperlora(
    path: str | os.PathLike[str],
    base_model: str | os.PathLike[str] | PreTrainedModel | None = None,
    *,
    device: str | torch.device = "cpu",
    torch_dtype: torch.dtype | None = None,
    fuse: bool = False,
) -> tuple[PreTrainedModel, Any, dict[str, Any]]:
    """Rebuild a saved HyperLoRA model: ``(model, tokenizer, adapter_config)``.

    The base comes from ``base_model`` (a path, hub id or model object) or else the recorded
    ``base_model_name_or_path``; it must match the recorded fingerprint. Embeddings are
    resized to the tokenizer, the adapter is re-injected from the config alone and its state
    loaded strictly. ``fuse`` turns on the speed-ups of :mod:`janus.hyperlora.fusion` (same
    outputs; the agent uses them). The model is returned in eval mode with no ρ set.
    """
    directory = Path(path).expanduser()
    config = read_adapter_config(directory)
    state = _read_state(directory, config)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except Exception as error:
        raise ValueError(f"could not load the tokenizer saved in {directory}: {error}") from error

    source = base_model if base_model is not None else config["base_model_name_or_path"]
    model, base_desc = _load_base(source, torch_dtype)
    saved_fp, current_fp = config["base_fingerprint"], base_fingerprint(model)
    diffs = fingerprint_differences(saved_fp, current_fp)
    if diffs:
        hint = ""
        if saved_fp.get("vocab_size", 0) > (current_fp.get("vocab_size") or 0):
            hint = (
                " (embeddings resized at training time without resize_for_tokenizer record "
                "the resized vocab_size)"
            )
        raise ValueError(
            f"adapter {directory} was trained on another base than {base_desc}: "
            + "; ".join(f"{d} (adapter vs base)" for d in diffs)
            + hint
        )
    resize_for_tokenizer(model, tokenizer)
    summary = inject_hyperlora(model, HyperLoRAConfig.from_dict(config), fuse=fuse)
    if summary.matched != list(config["adapted_modules"]):
        raise ValueError(
            f"target_modules of {directory} now match {len(summary.matched)} layers of "
            f"{base_desc}, the adapter has {len(config['adapted_modules'])}"
        )
    try:
        load_adapter_state_dict(model, state)
    except ValueError as error:
        raise ValueError(f"{directory}: {error}") from error
    model.to(device)
    model.eval()
    return model, tokenizer, config
