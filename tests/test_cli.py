"""The `janus` command: help that teaches, one-line errors, export round trips."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from janus.checkpoint import resize_for_tokenizer, save_hyperlora_adapter
from janus.cli import app
from janus.examples import add_special_tokens
from janus.hyperlora import inject_hyperlora, iter_hyperlora_layers, rho_context
from janus.tiny import build_model, build_tokenizer

runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved run (random janus-tiny base + an adapter with non-zero B)."""
    root = tmp_path_factory.mktemp("cli")
    base_dir = root / "base"
    tokenizer = build_tokenizer()
    build_model("tiny", tokenizer, seed=1).save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    token_ids = add_special_tokens(tokenizer)
    model = build_model("tiny", tokenizer, seed=1)
    resize_for_tokenizer(model, tokenizer)
    inject_hyperlora(model, rank=4, alpha=8, hyper_hidden=8, trainable_token_ids=token_ids)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, layer in iter_hyperlora_layers(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator) * 0.2)
    save_hyperlora_adapter(
        model, tokenizer, root / "run" / "adapter", base_model_name_or_path=base_dir
    )
    return root / "run"


def test_help_lists_the_pipeline_in_order() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    order = ["generate", "prepare", "base", "train", "evaluate", "export", "play", "demo"]
    table = result.output[result.output.index("Commands") :]
    positions = [table.index(f"│ {name} ") for name in order]
    assert positions == sorted(positions)
    train_help = runner.invoke(app, ["train", "--help"]).output
    for option in ("--lambda-sep", "--resume", "--preset", "--grad-accum", "--max-length"):
        assert option in train_help


def test_train_options_take_hyperlora_defaults_and_explicit_targets(tmp_path: Path) -> None:
    from janus.hyperlora import HyperLoRAConfig

    output = runner.invoke(app, ["train", "--help"]).output
    train_help = " ".join(output.replace("│", " ").split())  # undo rich's wrapping
    assert f"LoRA rank r. Default: {HyperLoRAConfig().rank}, unless the preset" in train_help
    result = runner.invoke(app, ["train", "--target-modules", "q_proj|v_proj"])
    assert result.exit_code == 2
    assert "are not module name suffixes" in result.output and "re:<pattern>" in result.output


WIDE = 400  # wider than any paragraph of help: each one must then be exactly one line
NARROW = 60
BOX_CHARS = "│╭╮╰╯─"
COMMANDS = [info.name for info in app.registered_commands]


def written_paragraphs(doc: str | None) -> list[str]:
    """The paragraphs of a docstring as its author wrote them, whitespace normalised."""
    return [" ".join(p.split()) for p in inspect.cleandoc(doc or "").split("\n\n")]


def docstring_of(name: str | None) -> str | None:
    if name is None:
        return app.info.help
    (info,) = [info for info in app.registered_commands if info.name == name]
    return info.callback.__doc__


def render_help(name: str | None, columns: int) -> str:
    args = ([name] if name else []) + ["--help"]
    result = runner.invoke(app, args, env={"COLUMNS": str(columns), "FORCE_COLOR": None})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("name", [None, *COMMANDS])
def test_every_help_renders_its_paragraphs_as_written(name: str | None) -> None:
    """No paragraph comes out cut in two at the docstring's source line breaks, or with
    words lost (e.g. to rich markup), on a wide terminal or a narrow one."""
    paragraphs = written_paragraphs(docstring_of(name))
    assert paragraphs and all(len(p) < WIDE - 10 for p in paragraphs)
    lines = [line.strip() for line in render_help(name, WIDE).splitlines()]
    for paragraph in paragraphs:
        assert paragraph in lines, f"{name or 'janus'}: not one line: {paragraph!r}"
    narrow = render_help(name, NARROW)
    words = " ".join(narrow.translate({ord(c): " " for c in BOX_CHARS}).split())
    for paragraph in paragraphs:
        assert paragraph in words, f"{name or 'janus'}: words lost at {NARROW} columns"
    assert max(len(line) for line in narrow.splitlines()) <= NARROW


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_help_renders_whole(name: str) -> None:
    command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
    output = render_help(name, WIDE)
    helps = [getattr(p, "help", None) for p in command.params]
    assert all(helps), f"{name}: an option without help"
    for text in helps:
        assert any(text in line for line in output.splitlines()), f"{name}: {text!r}"


def test_export_merged_reproduces_the_adapter_at_that_rho(run_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from janus.agent import JanusAgent

    out = tmp_path / "merged"
    result = runner.invoke(
        app, ["export", "--run", str(run_dir), "--rho", "0.3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    agent = JanusAgent.from_pretrained(run_dir)
    ids = agent.tokenizer("<RHO> 0.30\n<TURN> 2 / 20\n<OUTPUT>", return_tensors="pt").input_ids
    with torch.no_grad(), rho_context(agent.model, 0.3):
        expected = agent.model(ids).logits
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, expected, atol=1e-5, rtol=1e-5)


def test_export_peft_writes_a_lora_adapter(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "peft"
    result = runner.invoke(
        app,
        ["export", "--run", str(run_dir), "--rho", "0.7", "--out", str(out), "--format", "peft"],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4


def test_user_errors_are_one_line_with_exit_status_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"schema_version": 1}\nnot json\n')
    result = runner.invoke(app, ["prepare", str(bad), "--out", str(tmp_path / "prepared")])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad.jsonl:1: field 'trajectory_id'" in errors[0]
    assert not (tmp_path / "prepared").exists()

    existing = tmp_path / "episodes.jsonl"
    existing.write_text("keep")
    result = runner.invoke(app, ["generate", "--episodes", "5", "--out", str(existing)])
    assert result.exit_code == 2 and "overwrite" in result.output
    assert existing.read_text() == "keep"

    result = runner.invoke(app, ["export", "--run", str(tmp_path), "--rho", "0.5", "--out", "x"])
    assert result.exit_code == 2 and "neither a run directory" in result.output
    result = runner.invoke(
        app, ["export", "--run", str(tmp_path), "--rho", "0.5", "--out", "x", "--format", "onnx"]
    )
    assert result.exit_code == 2 and "--format must be" in result.output
    # A misspelt rule is refused before the (missing) run is even looked at.
    result = runner.invoke(app, ["calibrate", "--run", str(tmp_path / "no"), "--rules", "acept"])
    assert result.exit_code == 2 and "unknown acceptance rule(s) 'acept'" in result.output


def test_evaluate_threads_override_the_preset(monkeypatch, tmp_path: Path) -> None:
    import janus.evaluation

    seen = []

    def fake_evaluate(config):
        seen.append(config)
        raise ValueError("stop here")  # reported as a one-line user error

    monkeypatch.setattr(janus.evaluation, "evaluate", fake_evaluate)
    args = ["evaluate", "--run", str(tmp_path), "--preset", "cpu-real"]
    assert runner.invoke(app, args).exit_code == 2
    assert runner.invoke(app, [*args, "--threads", "1"]).exit_code == 2
    assert runner.invoke(app, [*args, "--price-decoding", "mean"]).exit_code == 2
    assert [config.threads for config in seen] == [2, 1, 2]
    assert [config.price_decoding for config in seen] == ["greedy", "greedy", "mean"]


def test_rules_lists_every_rule_with_its_default_and_play_help_points_to_it() -> None:
    from janus.rules import ACCEPTANCE_RULES, DEFAULT_RULES

    result = runner.invoke(app, ["rules"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == list(ACCEPTANCE_RULES)
    for line in lines:
        name, mark = line.split()[:2]
        assert (mark == "default") == (name in DEFAULT_RULES)
        assert line.endswith(ACCEPTANCE_RULES[name])
    play_help = render_help("play", WIDE)
    assert "janus rules" in play_help and ", ".join(DEFAULT_RULES) in play_help


def test_refine_and_play_pass_their_exploration_and_decoding_options(
    monkeypatch, tmp_path: Path
) -> None:
    import janus.refine

    seen = []

    def fake_refine(config, say):
        seen.append(config)
        raise ValueError("stop here")

    monkeypatch.setattr(janus.refine, "refine", fake_refine)
    args = ["refine", "--run", str(tmp_path), "--out", str(tmp_path / "out")]
    assert runner.invoke(app, args).exit_code == 2
    explore = ["--temperature", "0.5", "--dial-noise", "0.1", "--price-decoding", "mean"]
    assert runner.invoke(app, [*args, *explore]).exit_code == 2
    assert [(c.temperature, c.dial_noise, c.price_decoding) for c in seen] == [
        (0.0, 0.0, "greedy"),
        (0.5, 0.1, "mean"),
    ]
    # A misspelt decoding is refused before the (missing) run is looked at.
    play = ["play", "--run", str(tmp_path / "none"), "--rho", "0.5", "--price-decoding", "avg"]
    result = runner.invoke(app, play)
    assert result.exit_code == 2 and "price decoding must be one of greedy, mean" in result.output
