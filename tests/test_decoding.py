"""Constrained decoding: every output is a valid action, batching changes nothing."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from janus.decoding import ActionConstraint, action_state, constrained_decode, is_complete
from janus.prompt import parse_action


@pytest.fixture(scope="module")
def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A small byte-level BPE whose merges make multi-character pieces such as 'OFF'."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [f"OFFER 0.{i:04d} ACCEPT buyer seller PAD" for i in range(0, 10000, 37)]
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<eos>", "<OUTPUT>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")


@pytest.fixture(scope="module")
def random_model(byte_tokenizer) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(byte_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("", True),
        ("ACC", True),
        ("ACCEPT", True),
        ("OFFER", True),
        ("OFFER 0.12", True),
        ("OFFER 1.000", True),
        ("OFFER 1.5", False),
        ("OFFER 2", False),
        ("OFFER 0.12345", False),
        ("OFFER 0,1", False),
        ("ACCEPTX", False),
        (" ACCEPT", False),
    ],
)
def test_action_state_accepts_exactly_the_prefixes(text: str, valid: bool) -> None:
    assert (action_state(text) is not None) is valid


def test_is_complete() -> None:
    assert is_complete("ACCEPT")
    assert is_complete("OFFER 0.4213")
    assert is_complete("OFFER 1.0000")
    assert not is_complete("OFFER 0.421")
    assert not is_complete("ACCEP")


def test_random_model_always_writes_a_valid_action(byte_tokenizer, random_model) -> None:
    constraint = ActionConstraint(byte_tokenizer, random_model.config.vocab_size)
    gen = torch.Generator().manual_seed(1)
    prompts = [
        torch.randint(0, len(byte_tokenizer), (int(n),), generator=gen).tolist()
        for n in torch.randint(3, 20, (24,), generator=gen)
    ]
    for temperature in (0.0, 1.5):
        outputs = constrained_decode(
            random_model,
            constraint,
            prompts,
            pad_id=byte_tokenizer.pad_token_id,
            temperature=temperature,
            generator=torch.Generator().manual_seed(2),
        )
        assert len(outputs) == len(prompts)
        for text in outputs:
            parsed = parse_action(text)  # raises on anything invalid
            assert parsed.kind in ("ACCEPT", "OFFER")


def test_multi_character_pieces_are_used(byte_tokenizer) -> None:
    constraint = ActionConstraint(byte_tokenizer)
    allowed = constraint.allowed_mask("")
    allowed_pieces = {byte_tokenizer.decode([i]) for i in allowed.nonzero().flatten().tolist()}
    assert "A" in allowed_pieces and "O" in allowed_pieces
    assert any(len(p) > 1 for p in allowed_pieces), allowed_pieces
    assert all(action_state(p) is not None for p in allowed_pieces)


def test_batched_decoding_equals_one_by_one(byte_tokenizer, random_model) -> None:
    constraint = ActionConstraint(byte_tokenizer, random_model.config.vocab_size)
    gen = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, 200, (n,), generator=gen).tolist() for n in (4, 11, 7, 16)]
    pad = byte_tokenizer.pad_token_id
    batched = constrained_decode(random_model, constraint, prompts, pad_id=pad)
    alone = [constrained_decode(random_model, constraint, [p], pad_id=pad)[0] for p in prompts]
    assert batched == alone


class _FullLogitsOnly(torch.nn.Module):
    """The same model behind a forward without ``logits_to_keep``: every position's logits.

    Its forward names the cache with the keyword of older transformers (``past_key_values``),
    so decoding through it also covers that path."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.inner = model

    def forward(self, input_ids, attention_mask, position_ids, use_cache, past_key_values=None):
        return self.inner(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            cache=past_key_values,
        )


def test_last_position_logits_decode_exactly_like_full_logits(byte_tokenizer, random_model) -> None:
    """The prefill asks only for the last position's logits; the sampled actions (greedy
    and seeded sampling) must equal those decoded from the full logits."""
    from janus.decoding import accepts_logits_to_keep, cache_keyword

    full = _FullLogitsOnly(random_model)
    assert accepts_logits_to_keep(random_model) and not accepts_logits_to_keep(full)
    assert cache_keyword(random_model) == "cache" and cache_keyword(full) == "past_key_values"
    constraint = ActionConstraint(byte_tokenizer, random_model.config.vocab_size)
    gen = torch.Generator().manual_seed(5)
    prompts = [torch.randint(0, 200, (n,), generator=gen).tolist() for n in (6, 13, 9)]
    pad = byte_tokenizer.pad_token_id
    for temperature in (0.0, 1.0):
        kept, reference = (
            constrained_decode(
                model,
                constraint,
                prompts,
                pad_id=pad,
                temperature=temperature,
                generator=torch.Generator().manual_seed(1),
            )
            for model in (random_model, full)
        )
        assert kept == reference


def test_decoding_uses_no_deprecated_transformers_api(byte_tokenizer, random_model) -> None:
    """transformers deprecates by warning first (FutureWarning, and a logged message for the
    renamed cache); a decode must trigger neither, so the next release cannot break it."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    transformers_logger = logging.getLogger("transformers")
    transformers_logger.addHandler(handler)
    constraint = ActionConstraint(byte_tokenizer, random_model.config.vocab_size)
    prompts = [[5, 9, 17, 33], [40, 2, 7]]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            outputs = constrained_decode(
                random_model, constraint, prompts, pad_id=byte_tokenizer.pad_token_id
            )
    finally:
        transformers_logger.removeHandler(handler)
    assert [parse_action(text).kind in ("ACCEPT", "OFFER") for text in outputs] == [True, True]
    assert [r.getMessage() for r in records if "deprecat" in r.getMessage()] == []


class _ScriptedLogits(torch.nn.Module):
    """A stand-in model whose n-th forward call scores the pieces ``steps[n]`` names with
    the given probabilities (every row alike, every other token far below)."""

    def __init__(self, tokenizer, steps: list[dict[str, float]]) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.vocab = len(tokenizer)
        ids = {tokenizer.decode([i]): i for i in range(self.vocab)}
        self.steps = [{ids[piece]: p for piece, p in step.items()} for step in steps]
        self.calls = 0

    def forward(self, input_ids, attention_mask, position_ids, use_cache, past_key_values=None):
        logits = torch.full((input_ids.shape[0], input_ids.shape[1], self.vocab), -1e4)
        for token_id, p in self.steps[min(self.calls, len(self.steps) - 1)].items():
            logits[:, -1, token_id] = torch.log(torch.tensor(p))
        self.calls += 1
        return type("Out", (), {"logits": logits})()


def _offer_script(tenths: dict[str, float]) -> list[dict[str, float]]:
    """OFFER, space, 0, '.', then the first decimal drawn from ``tenths``, then 0, 0, 0."""
    return [{"OFFER": 0.9, "ACCEPT": 0.1}, {" ": 1.0}, {"0": 1.0}, {".": 1.0}, tenths] + [
        {"0": 0.7, "3": 0.3}
    ] * 3


def _expected_offer(tenths: dict[str, float], temperature: float) -> str:
    """The reference: the first decimal's mean under the distribution at ``temperature``."""
    weights = {int(d): p ** (1 / temperature) for d, p in tenths.items()}
    mean = sum(d * w for d, w in weights.items()) / sum(weights.values())
    return f"OFFER {0.1 * mean:.4f}"  # the script's later decimals are all 0


@pytest.mark.parametrize(
    ("tenths", "greedy"),
    [
        ({"1": 0.6, "5": 0.4}, "OFFER 0.1000"),  # split between a low and a high price
        ({"4": 1.0}, "OFFER 0.4000"),  # a sure model: the greedy price
        ({"9": 0.5, "8": 0.3, "2": 0.2}, "OFFER 0.9000"),
    ],
)
def test_mean_price_decoding_reads_the_first_decimal_as_its_expectation(
    tenths: dict[str, float], greedy: str
) -> None:
    from janus.decoding import MEAN_PRICE_TEMPERATURE
    from janus.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    constraint = ActionConstraint(tokenizer)
    prompts = [[5, 6, 7], [8, 9]]

    def decode(price: str) -> list[str]:
        model = _ScriptedLogits(tokenizer, _offer_script(tenths))
        return constrained_decode(model, constraint, prompts, pad_id=0, price=price)

    assert decode("greedy") == [greedy, greedy]
    mean = _expected_offer(tenths, MEAN_PRICE_TEMPERATURE)
    assert decode("mean") == [mean, mean]
    assert (mean == greedy) is (len(tenths) == 1)
    # Between the greedy digit and the plain mean: sharpened toward the likeliest digit.
    plain = float(_expected_offer(tenths, 1.0).split()[1])
    low, high = sorted((plain, float(greedy.split()[1])))
    assert low <= float(mean.split()[1]) <= high
    with pytest.raises(ValueError, match="price decoding must be one of"):
        decode("median")


def test_mean_price_decoding_leaves_accepts_and_sampling_alone() -> None:
    from janus.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    constraint = ActionConstraint(tokenizer)
    accept = _ScriptedLogits(tokenizer, [{"ACCEPT": 0.8, "OFFER": 0.2}])
    assert constrained_decode(accept, constraint, [[5]], pad_id=0, price="mean") == ["ACCEPT"]
    script = _offer_script({"1": 0.6, "5": 0.4})
    sampled = [
        constrained_decode(
            _ScriptedLogits(tokenizer, script),
            constraint,
            [[5]] * 16,
            pad_id=0,
            temperature=1.0,
            generator=torch.Generator().manual_seed(0),
            price=price,
        )
        for price in ("greedy", "mean")
    ]
    assert sampled[0] == sampled[1]  # sampling draws the digits; the mean is not applied
