"""Exports that stand alone: the card's own loading code runs from a copy of the export
directory, with the run gone and Janus unimportable, and reproduces Janus's logits at ρ.

Two bases: janus-tiny (the prompt's tokens are in its vocabulary, tied head, BOS added) and
a Llama whose tokenizer gets the nine tokens appended (nine new rows, untied head, no BOS),
the path a real LLM such as SmolLM2 takes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast
from typer.testing import CliRunner

from janus.checkpoint import load_hyperlora, resize_for_tokenizer, save_hyperlora_adapter
from janus.cli import app
from janus.examples import add_special_tokens, encode_prompt
from janus.hyperlora import inject_hyperlora, rho_context
from janus.prompt import PROMPT_FORMAT_VERSION, SPECIAL_TOKENS
from janus.tiny import build_model as build_tiny
from janus.tiny import build_tokenizer
from janus.train import DATA_FILE, TrainConfig
from tiny_lm import VOCAB, randomise_adapter
from tiny_lm import build_model as build_plain

runner = CliRunner()
RHO = 0.3
SNIPPETS = {"peft": "## Load with PEFT", "merged": "## Load with transformers"}


def _word_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the plain model's VOCAB ids (no BOS template)."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2} | {f"w{i}": i for i in range(3, VOCAB)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def _make_run(root: Path, kind: str) -> Path:
    """A base directory and a run (adapter + the trainer's data.json) under ``root``."""
    base_dir = root / "base"
    if kind == "janus-tiny":
        tokenizer = build_tokenizer()
        build_tiny("tiny", tokenizer, seed=3).save_pretrained(base_dir)
    else:
        tokenizer = _word_tokenizer()
        build_plain("llama", tie=False, seed=3).save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    token_ids = add_special_tokens(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    rows = model.get_input_embeddings().weight.shape[0]
    assert (resize_for_tokenizer(model, tokenizer) > rows) == (kind != "janus-tiny")
    inject_hyperlora(model, rank=4, alpha=8, hyper_hidden=8, trainable_token_ids=token_ids)
    randomise_adapter(model, seed=7)  # non-zero B, moved token rows
    config = TrainConfig(base_model=str(base_dir), max_steps=123, seed=5)
    save_hyperlora_adapter(
        model,
        tokenizer,
        root / "run" / "adapter",
        base_model_name_or_path=base_dir,
        extra_config={
            "special_tokens": list(SPECIAL_TOKENS),
            "prompt_format_version": PROMPT_FORMAT_VERSION,
            "k": 8,
            "train_config": config.to_json(),
        },
    )
    (root / "run" / DATA_FILE).write_text(json.dumps({"scripted_rows": 4321, "extra_rows": 0}))
    return root / "run"


def _snippet(card: str, heading: str) -> str:
    block = re.search(re.escape(heading) + r".*?```python\n(.*?)```", card, re.S)
    assert block, f"no python block under {heading!r}"
    return block.group(1)


def _prompt_of(snippet: str) -> str:
    line = next(line for line in snippet.splitlines() if line.startswith("prompt = "))
    return json.loads(line.removeprefix("prompt = "))


def _run_alone(cases: dict[str, tuple[str, Path]]) -> dict[str, dict[str, torch.Tensor]]:
    """Run each card's code in one fresh interpreter, Janus unimportable, each from its own
    export directory (one interpreter: importing torch, transformers and peft dominates)."""
    runs = [
        f"os.chdir({str(directory)!r})\n"
        f"exec(compile({snippet!r}, 'README.md', 'exec'), scope := {{}})\n"
        "save_file({'logits': scope['logits'].contiguous(), 'input_ids': scope['input_ids']},"
        f" {name + '.safetensors'!r})\n"
        for name, (snippet, directory) in cases.items()
    ]
    code = (
        "import os, sys\nsys.modules['janus'] = None  # the export must not need Janus\n"
        "from safetensors.torch import save_file\n" + "".join(runs)
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {
        name: load_file(str(directory / f"{name}.safetensors"))
        for name, (_, directory) in cases.items()
    }


CASES = [(kind, fmt) for kind in ("janus-tiny", "llama-added-tokens") for fmt in ("peft", "merged")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every (base, format) exported by the CLI, copied away from a run that is then moved
    away, Janus's logits for the card's prompt, and what the card's code computed alone."""
    results: dict[str, dict] = {}
    cases: dict[str, tuple[str, Path]] = {}
    for kind, fmt in CASES:
        name = f"{kind}-{fmt}"
        root = tmp_path_factory.mktemp(name)
        run, out = _make_run(root, kind), root / "export"
        args = ["export", "--run", str(run), "--rho", str(RHO), "--out", str(out)]
        result = runner.invoke(app, [*args, "--format", fmt])
        assert result.exit_code == 0, result.output
        snippet = _snippet((out / "README.md").read_text(encoding="utf-8"), SNIPPETS[fmt])
        model, tokenizer, _ = load_hyperlora(run / "adapter")
        ids = torch.tensor([encode_prompt(tokenizer, _prompt_of(snippet))])
        with torch.no_grad(), rho_context(model, RHO):
            expected = model(ids).logits
        with torch.no_grad(), rho_context(model, 0.9):
            elsewhere = model(ids).logits
        alone = root / "elsewhere" / "copy"
        shutil.copytree(out, alone)
        shutil.rmtree(out)
        run.rename(root / "moved")
        cases[name] = (snippet, alone)
        results[name] = dict(
            ids=ids, expected=expected, elsewhere=elsewhere, tokenizer=tokenizer, alone=alone
        )
    for name, got in _run_alone(cases).items():
        results[name]["got"] = got
    return results


@pytest.mark.parametrize(("kind", "format"), CASES)
def test_the_cards_snippet_runs_alone_and_reproduces_janus(exported, kind, format) -> None:
    case = exported[f"{kind}-{format}"]
    got = case["got"]
    assert torch.equal(got["input_ids"], case["ids"])  # the card's token rule is Janus's
    difference = (got["logits"] - case["expected"]).abs().max().item()
    print(f"{kind} {format}: max |logit difference| {difference:.2e}")
    assert difference < 1e-4, f"max |Δlogit| {difference:.2e}"
    assert (got["logits"] - case["elsewhere"]).abs().max().item() > 1e-3  # ρ matters
    exported_tokenizer = AutoTokenizer.from_pretrained(case["alone"])
    tokens = list(SPECIAL_TOKENS)
    assert exported_tokenizer.convert_tokens_to_ids(tokens) == case[
        "tokenizer"
    ].convert_tokens_to_ids(tokens)


def test_the_card_says_what_it_is_and_how_it_was_trained(tmp_path: Path) -> None:
    run = _make_run(tmp_path, "llama-added-tokens")
    out = tmp_path / "export"
    result = runner.invoke(
        app, ["export", "--run", str(run), "--rho", "0.333", "--out", str(out), "--format", "peft"]
    )
    assert result.exit_code == 0, result.output
    assert "exported at rho=0.33 (peft)" in result.output  # quantised once, as the prompt is
    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"`{tmp_path / 'base'}`" in card and "# Janus at ρ = 0.33" in card
    assert "| max_steps | 123 |" in card and "| seed | 5 |" in card
    assert "| scripted_rows | 4321 |" in card
    assert "<RHO> 0.33" in card and "base.resize_token_embeddings(57" in card
    assert "<RESERVATION_NORM> seller:0.3077" in card  # the prompt format it trained with
    assert "## Serve with vLLM (not tested)" in card and "never run" in card
    assert "from vllm.lora.request import LoRARequest" in card
    record = json.loads((out / "janus_export.json").read_text())
    assert record["rho"] == 0.33 and record["format"] == "peft"
    assert record["train_config"]["max_steps"] == 123
    assert record["run_records"]["data"] == {"scripted_rows": 4321, "extra_rows": 0}
    peft_config = json.loads((out / "adapter_config.json").read_text())
    assert peft_config["trainable_token_indices"] == {
        "model.embed_tokens": list(range(VOCAB, VOCAB + 9)),
        "lm_head": list(range(VOCAB, VOCAB + 9)),  # untied head: its added rows travel too
    }


def test_export_refuses_bad_requests_in_one_line(tmp_path: Path) -> None:
    run = _make_run(tmp_path, "janus-tiny")
    result = runner.invoke(
        app, ["export", "--run", str(run), "--rho", "1.5", "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 2 and "rho must be in [0, 1]" in result.output
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["export", "--run", str(run), "--rho", "0.5", "--out", str(notes)])
    assert result.exit_code == 2 and "refusing to replace" in result.output
    assert (notes / "keep.txt").read_text() == "mine" and not (tmp_path / "x").exists()
    # Nor the run's own adapter (it has an adapter_config.json, as a PEFT export does).
    adapter = run / "adapter"
    args = ["export", "--run", str(run), "--rho", "0.5", "--out", str(adapter), "--format", "peft"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "refusing to replace" in result.output
    assert (adapter / "adapter_state.safetensors").is_file()
