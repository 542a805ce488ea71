"""Training examples: exact label masks on three tokenizer kinds, datasets, collation, batching."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from janus.examples import (
    IGNORE_INDEX,
    DecisionStepDataset,
    ExampleCollator,
    LengthBucketedBatchSampler,
    TrainingExample,
    add_special_tokens,
    adds_bos,
    encode_example,
    encode_prompt,
    padding_waste,
    read_decision_steps,
    row_prompt_and_target,
)
from janus.prompt import SPECIAL_TOKENS, PromptState, build_prompt, canonical_rho
from janus.tiny_tokenizer import build_tokenizer, tokenizer_corpus

# ------------------------------------------------------------------------ tokenizers


def gpt2_like() -> PreTrainedTokenizerFast:
    """Byte-level BPE, digits merged freely, one <|endoftext|> for BOS/EOS, never adds BOS."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(tokenizer_corpus(300, seed=1), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )


def llama_like() -> PreTrainedTokenizerFast:
    """SentencePiece-style (Metaspace) BPE that adds <s> in front; no pad token."""
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    backend.train_from_iterator(tokenizer_corpus(300, seed=2), trainer=trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", backend.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


TOKENIZER_KINDS = {"janus-tiny": build_tokenizer, "gpt2-like": gpt2_like, "llama-like": llama_like}
EXPECTS_BOS = {"janus-tiny": True, "gpt2-like": False, "llama-like": True}


@pytest.fixture(scope="module", params=sorted(TOKENIZER_KINDS))
def kind_and_tokenizer(request: pytest.FixtureRequest) -> tuple[str, PreTrainedTokenizerFast]:
    tokenizer = TOKENIZER_KINDS[request.param]()
    add_special_tokens(tokenizer)
    return request.param, tokenizer


@pytest.fixture(scope="module")
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer()


def test_add_special_tokens_is_idempotent_and_sets_pad() -> None:
    tokenizer = llama_like()
    assert tokenizer.pad_token_id is None
    size = len(tokenizer)
    ids = add_special_tokens(tokenizer)
    assert len(set(ids)) == len(SPECIAL_TOKENS)
    assert len(tokenizer) == size + len(SPECIAL_TOKENS)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    assert add_special_tokens(tokenizer) == ids
    assert len(tokenizer) == size + len(SPECIAL_TOKENS)
    for token, token_id in zip(SPECIAL_TOKENS, ids, strict=True):
        assert tokenizer(f"x{token}y", add_special_tokens=False)["input_ids"].count(token_id) == 1
        assert tokenizer.decode([token_id], skip_special_tokens=True) == ""


def test_add_special_tokens_resizes_the_model() -> None:
    tokenizer = gpt2_like()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    model = LlamaForCausalLM(config)
    ids = add_special_tokens(tokenizer, model)
    assert model.get_input_embeddings().num_embeddings >= len(tokenizer) > max(ids)
    logits = model(torch.tensor([ids])).logits
    assert logits.shape[-1] >= len(tokenizer)


def test_add_special_tokens_needs_eos() -> None:
    backend = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    with pytest.raises(ValueError, match="EOS"):
        add_special_tokens(tokenizer)


def test_bos_detection(kind_and_tokenizer: tuple[str, PreTrainedTokenizerFast]) -> None:
    kind, tokenizer = kind_and_tokenizer
    assert tokenizer.bos_token_id is not None  # even GPT-2 has one; it just never adds it
    assert adds_bos(tokenizer) is EXPECTS_BOS[kind]


def test_labels_cover_exactly_the_target_and_eos(
    kind_and_tokenizer: tuple[str, PreTrainedTokenizerFast], synthetic_decision_steps: Path
) -> None:
    kind, tokenizer = kind_and_tokenizer
    rows = read_decision_steps(synthetic_decision_steps, "train", include_failures=True)
    chosen = rows[:: max(1, len(rows) // 25)]
    assert any(r["target_action"] == "ACCEPT" for r in rows)
    chosen += [r for r in rows if r["target_action"] == "ACCEPT"][:3]
    for i, row in enumerate(chosen):
        rho = [None, -1.0, 0.0, 1.0, 0.37][i % 5]
        prompt, target = row_prompt_and_target(row, rho)
        example = encode_example(tokenizer, prompt, target)
        ids, labels = list(example.input_ids), list(example.labels)
        assert len(ids) == len(labels)
        prefix = encode_prompt(tokenizer, prompt)
        assert ids[: len(prefix)] == prefix  # what the agent feeds at inference
        assert (prefix[0] == tokenizer.bos_token_id) is EXPECTS_BOS[kind]
        assert all(label == IGNORE_INDEX for label in labels[: len(prefix)])
        labelled = ids[len(prefix) :]
        assert labels[len(prefix) :] == labelled
        assert labelled == tokenizer(target, add_special_tokens=False)["input_ids"] + [
            tokenizer.eos_token_id
        ]
        assert ids[-1] == tokenizer.eos_token_id
        decoded = tokenizer.decode(labelled, skip_special_tokens=False)
        assert decoded == target + tokenizer.eos_token
        # the prompt decodes back to itself (janus-tiny and GPT-2 are byte-level and exact)
        if kind != "llama-like":
            body = prefix[1:] if EXPECTS_BOS[kind] else prefix
            assert tokenizer.decode(body, skip_special_tokens=False) == prompt


# --------------------------------------------------------------------------- dataset


def prompt_of(tokenizer: PreTrainedTokenizerFast, example: TrainingExample) -> str:
    prompt_ids = [
        int(i)
        for i, lab in zip(example.input_ids, example.labels, strict=True)
        if lab == IGNORE_INDEX
    ]
    assert prompt_ids[0] == tokenizer.bos_token_id
    return tokenizer.decode(prompt_ids[1:], skip_special_tokens=False)


def test_dataset_outcome_mode(
    tiny_tokenizer: PreTrainedTokenizerFast, synthetic_decision_steps: Path
) -> None:
    rows = [
        r
        for r in pq.read_table(synthetic_decision_steps / "decision_steps.parquet").to_pylist()
        if r["split"] == "train"
    ]
    data = DecisionStepDataset(synthetic_decision_steps, "train", tiny_tokenizer)
    kept = [r for r in rows if r["rho_train"] != -1.0]
    assert 0 < len(kept) < len(rows)  # the fixture has impasses, and they are dropped
    assert len(data) == len(kept)
    assert data.lengths == [len(e.input_ids) for e in data.examples]
    for row, example in zip(kept, data, strict=True):
        assert example.rho == canonical_rho(row["rho_train"])
        single = encode_example(tiny_tokenizer, *row_prompt_and_target(row, example.rho))
        assert example.input_ids.tolist() == list(single.input_ids)
        assert example.labels.tolist() == list(single.labels)
        assert prompt_of(tiny_tokenizer, example) == build_prompt(
            PromptState.from_row(row), example.rho
        )
    with_failures = DecisionStepDataset(
        synthetic_decision_steps, "train", tiny_tokenizer, include_failures=True, k=3
    )
    assert len(with_failures) == len(rows)
    failed = [e for e in with_failures if e.rho == -1.0]
    assert failed
    lines = prompt_of(tiny_tokenizer, failed[0]).split("\n")
    assert lines[0] == "<RHO> <RHO_FAIL>"
    assert lines[5].startswith("<HISTORY> ") and len(lines[5].split()) == 1 + 3  # k=3


def test_a_selection_encodes_only_the_rows_it_picks_in_its_order(
    tiny_tokenizer: PreTrainedTokenizerFast, synthetic_decision_steps: Path
) -> None:
    full = DecisionStepDataset(synthetic_decision_steps, "train", tiny_tokenizer)
    seen: list[int] = []

    def pick(n: int) -> list[int]:
        seen.append(n)
        return [5, 0, n - 1]

    picked = DecisionStepDataset(synthetic_decision_steps, "train", tiny_tokenizer, select=pick)
    assert seen == [len(full)]  # told the split's row count, once
    assert len(picked) == 3
    for example, index in zip(picked, (5, 0, len(full) - 1), strict=True):
        assert example.input_ids.tolist() == full[index].input_ids.tolist()
        assert example.rho == full[index].rho


def test_dataset_blind_mode_is_seeded_and_independent_of_the_rows(
    tiny_tokenizer: PreTrainedTokenizerFast,
    synthetic_decision_steps: Path,
    make_synthetic_decision_steps: Callable[..., Path],
) -> None:
    def blind(prepared: Path, seed: int) -> DecisionStepDataset:
        return DecisionStepDataset(
            prepared, "train", tiny_tokenizer, include_failures=True, rho_mode="blind", seed=seed
        )

    a = blind(synthetic_decision_steps, seed=0)
    rhos = [e.rho for e in a]
    assert rhos == [e.rho for e in blind(synthetic_decision_steps, seed=0)]
    assert rhos != [e.rho for e in blind(synthetic_decision_steps, seed=1)]
    assert -1.0 in rhos and len(set(rhos)) > 20
    assert all(r == -1.0 or (0 <= r <= 1 and r == round(r, 2)) for r in rhos)
    # The draws do not depend on the rows: another corpus gets the same ρ sequence.
    other = blind(make_synthetic_decision_steps(n_trajectories=30, seed=7), seed=0)
    n = min(len(other), len(a))
    assert [e.rho for e in other][:n] == rhos[:n]
    # Text and tensor agree.
    for example in a.examples[:40]:
        first_line = prompt_of(tiny_tokenizer, example).split("\n")[0]
        expected = "<RHO> <RHO_FAIL>" if example.rho == -1.0 else f"<RHO> {example.rho:.2f}"
        assert first_line == expected


def test_dataset_errors(
    tiny_tokenizer: PreTrainedTokenizerFast, synthetic_decision_steps: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"decision_steps\.parquet.*split 'nope'"):
        DecisionStepDataset(synthetic_decision_steps, "nope", tiny_tokenizer)
    with pytest.raises(FileNotFoundError, match="decision_steps"):
        DecisionStepDataset(tmp_path, "train", tiny_tokenizer)
    table = pq.read_table(synthetic_decision_steps / "decision_steps.parquet")
    pq.write_table(table.drop_columns(["rho_train"]), tmp_path / "decision_steps.parquet")
    with pytest.raises(ValueError, match=r"decision_steps\.parquet: missing column 'rho_train'"):
        DecisionStepDataset(tmp_path, "train", tiny_tokenizer)
    with pytest.raises(ValueError, match="rho_mode"):
        DecisionStepDataset(synthetic_decision_steps, "train", tiny_tokenizer, rho_mode="x")
    with pytest.raises(ValueError, match="add_special_tokens"):
        DecisionStepDataset(synthetic_decision_steps, "train", gpt2_like())


def test_collator(tiny_tokenizer: PreTrainedTokenizerFast, synthetic_decision_steps: Path) -> None:
    data = DecisionStepDataset(synthetic_decision_steps, "val", tiny_tokenizer, k=2)
    examples = [data[0], data[1], data[2]]
    examples.append(TrainingExample(np.array([5, 6, 7]), prompt_length=1, rho=0.25))
    batch = ExampleCollator(tiny_tokenizer.pad_token_id)(examples)
    width = max(len(e) for e in examples)
    assert batch["input_ids"].shape == batch["labels"].shape == (4, width)
    assert batch["input_ids"].dtype == batch["labels"].dtype == torch.long
    assert batch["rho"].dtype == torch.float32 and batch["rho"].shape == (4,)
    assert batch["rho"].tolist() == pytest.approx([e.rho for e in examples])
    for i, example in enumerate(examples):
        n = len(example)
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (width - n)
        assert batch["input_ids"][i, :n].tolist() == list(example.input_ids)
        assert batch["labels"][i, :n].tolist() == list(example.labels)
        assert (batch["input_ids"][i, n:] == tiny_tokenizer.pad_token_id).all()
        assert (batch["labels"][i, n:] == IGNORE_INDEX).all()
    with pytest.raises(ValueError, match="empty"):
        ExampleCollator(0)([])


# --------------------------------------------------------------------------- sampler


def random_lengths(n: int = 1000, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(20, 300, size=n).tolist()


def test_sampler_is_deterministic_and_covers_every_index_once() -> None:
    lengths = random_lengths(1003)
    sampler = LengthBucketedBatchSampler(lengths, 16, seed=3, bucket_batches=10)
    first = list(sampler)
    assert first == list(LengthBucketedBatchSampler(lengths, 16, seed=3, bucket_batches=10))
    assert first != list(LengthBucketedBatchSampler(lengths, 16, seed=4, bucket_batches=10))
    assert len(first) == len(sampler) == -(-1003 // 16)
    assert sorted(i for b in first for i in b) == list(range(1003))
    assert all(15 <= len(b) <= 16 for b in first)  # near-equal sizes, no tiny last batch
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first
    assert sorted(i for b in second for i in b) == list(range(1003))


def test_sampler_reduces_padding() -> None:
    lengths = random_lengths(2000, seed=1)
    bucketed = list(LengthBucketedBatchSampler(lengths, 32, seed=0))
    order = np.random.default_rng(0).permutation(len(lengths))
    shuffled = [order[i : i + 32].tolist() for i in range(0, len(order), 32)]
    assert padding_waste(lengths, bucketed) < 0.25 * padding_waste(lengths, shuffled)


def test_sampler_resume_skips_batches() -> None:
    lengths = random_lengths(500)
    sampler = LengthBucketedBatchSampler(lengths, 8, seed=0)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2, start_batch=5)
    assert len(sampler) == len(full) - 5
    assert list(sampler) == full[5:]
    sampler.set_epoch(3)
    assert len(sampler) == len(full)
    with pytest.raises(ValueError, match="start_batch"):
        sampler.set_epoch(0, start_batch=len(full) + 1)


@pytest.mark.parametrize("n", [1000, 1001, 997])
def test_sampler_ddp_shards_are_disjoint_and_rebuild_the_global_batch(n: int) -> None:
    lengths = random_lengths(n)
    single = LengthBucketedBatchSampler(lengths, 16, seed=5)
    ranks = [LengthBucketedBatchSampler(lengths, 8, seed=5, num_replicas=2, rank=r) for r in (0, 1)]
    for sampler in (single, *ranks):
        sampler.set_epoch(1, start_batch=2)
    shards = [list(r) for r in ranks]
    assert len(shards[0]) == len(shards[1]) == len(single)
    for whole, a, b in zip(single, *shards, strict=True):
        assert a and b and not set(a) & set(b)
        assert sorted(a + b) == sorted(whole)
        assert abs(len(a) - len(b)) <= 1


def test_sampler_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="too few"):
        LengthBucketedBatchSampler([10, 20, 30], 1, num_replicas=4, rank=0)
    with pytest.raises(ValueError, match="rank"):
        LengthBucketedBatchSampler([10, 20, 30], 1, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="batch_size"):
        LengthBucketedBatchSampler([10, 20, 30], 0)
