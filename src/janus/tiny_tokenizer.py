"""The janus-tiny tokenizer: byte-level BPE, digits one by one, the prompt tokens special.

Trained deterministically on a fixed synthetic corpus of canonical prompts (so its merges
cover exactly the words the prompt uses); digits are split one by one, like real LLM
tokenizers; the nine prompt tokens plus ``<s> </s> <pad> <unk>`` are special; BOS is added in
front of every text, as Llama's tokenizer does. :mod:`janus.tiny` builds the model on it.
"""

from __future__ import annotations

import hashlib
import random

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from janus.examples import add_special_tokens
from janus.prompt import IMPASSE_RHO, ROLES, SPECIAL_TOKENS, PromptState, build_prompt, build_target

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
MAX_POSITIONS = 512
"""janus-tiny's context length (the tokenizer's ``model_max_length`` and the model's)."""

TOKENIZER_CORPUS_SIZE = 600
TOKENIZER_CORPUS_SEED = 20240531
TOKENIZER_VOCAB_SIZE = 512


def tokenizer_corpus(
    n: int = TOKENIZER_CORPUS_SIZE, seed: int = TOKENIZER_CORPUS_SEED
) -> list[str]:
    """A fixed synthetic corpus of prompt + target texts rendered from random states.

    Rendered with the canonical prompt itself, so the merges cover exactly the words the
    prompt uses. ``random.Random`` with a fixed seed: the same texts on every machine.
    """
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        max_turns = rng.choice((10, 12, 16, 20, 24, 30))
        turn = rng.randint(1, max_turns)
        history = tuple((rng.choice(ROLES), rng.random()) for _ in range(rng.randint(0, turn)))
        state = PromptState(
            turn=turn,
            max_turns=max_turns,
            reservation_norm=rng.random(),
            last_offer_norm=history[-1][1] if history else None,
            history=history,
        )
        rho = rng.choice((None, IMPASSE_RHO, rng.random(), rng.random()))
        k = rng.choice((0, 4, 8, 8, 12))
        target = (
            build_target("ACCEPT") if rng.random() < 0.3 else build_target("OFFER", rng.random())
        )
        # Version 1 (no side on the reservation line): version 2 adds no word that the
        # history's ``role:price`` entries do not already show, so the tokenizer (and every
        # janus-tiny base built with it) is the same for both formats.
        texts.append(build_prompt(state, rho, k, version=1) + target)
    return texts


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The janus-tiny tokenizer: byte-level BPE, digits one by one, prompt tokens special.

    Byte-level, so every string round-trips exactly (decode(encode(x)) == x). Trained on
    :func:`tokenizer_corpus` with a fixed seed; the BPE trainer breaks ties deterministically,
    so every build produces the same vocabulary and merges (the test checks it). BOS is added
    in front of every encoded text by a template post-processor, as Llama's tokenizer does.
    """
    special = [UNK, BOS, EOS, PAD, *SPECIAL_TOKENS]
    backend = Tokenizer(models.BPE(unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB_SIZE,
        min_frequency=2,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    bos_id = backend.token_to_id(BOS)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B:1", special_tokens=[(BOS, bos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        extra_special_tokens=list(SPECIAL_TOKENS),
        model_max_length=MAX_POSITIONS,
    )
    add_special_tokens(tokenizer)  # no-op by construction; checks every token has its own id
    return tokenizer


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerFast) -> str:
    """sha256 of the serialised backend tokenizer (vocabulary, merges, special tokens)."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()
