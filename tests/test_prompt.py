"""The canonical prompt: golden strings pin the format exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from janus.prompt import (
    DEFAULT_K,
    IMPASSE_RHO,
    OUTPUT_PATTERN,
    PROMPT_FORMAT_VERSION,
    PROMPT_VERSIONS,
    SPECIAL_TOKENS,
    ParsedAction,
    PromptState,
    build_prompt,
    build_target,
    canonical_rho,
    parse_action,
)

INSTRUCTION_LINES = "<INSTRUCTION> Output exactly one of:\nACCEPT\nOFFER <PRICE_NORM>\n<OUTPUT>"


def spec_state() -> PromptState:
    return PromptState(
        turn=7,
        max_turns=20,
        reservation_norm=0.8421,
        last_offer_norm=0.4123,
        history=(("buyer", 0.3), ("seller", 0.4), ("buyer", 0.42)),
        role="seller",
    )


def test_constants() -> None:
    assert SPECIAL_TOKENS == (
        "<RHO>",
        "<TURN>",
        "<TURNS_REMAINING>",
        "<RESERVATION_NORM>",
        "<LAST_OFFER_NORM>",
        "<HISTORY>",
        "<INSTRUCTION>",
        "<OUTPUT>",
        "<RHO_FAIL>",
    )
    assert PROMPT_FORMAT_VERSION == 2 and PROMPT_VERSIONS == (1, 2)
    assert DEFAULT_K == 8
    assert IMPASSE_RHO == -1.0


def test_golden_specification_example() -> None:
    """Version 1 is the original specification's format, kept for adapters trained on it."""
    expected = (
        "<RHO> 0.53\n"
        "<TURN> 7 / 20\n"
        "<TURNS_REMAINING> 13\n"
        "<RESERVATION_NORM> 0.8421\n"
        "<LAST_OFFER_NORM> 0.4123\n"
        "<HISTORY> PAD:0.0000 PAD:0.0000 PAD:0.0000 PAD:0.0000 PAD:0.0000 "
        "buyer:0.3000 seller:0.4000 buyer:0.4200\n"
        "<INSTRUCTION> Output exactly one of:\n"
        "ACCEPT\n"
        "OFFER <PRICE_NORM>\n"
        "<OUTPUT>"
    )
    assert build_prompt(spec_state(), 0.53, version=1) == expected
    # ρ is canonicalised before rendering: 0.5349 shows as 0.53 too.
    assert build_prompt(spec_state(), 0.5349, version=1) == expected


def test_golden_version_2_names_the_side_on_the_reservation_line() -> None:
    expected = build_prompt(spec_state(), 0.53, version=1).replace(
        "<RESERVATION_NORM> 0.8421\n", "<RESERVATION_NORM> seller:0.8421\n"
    )
    assert "seller:0.8421" in expected
    assert build_prompt(spec_state(), 0.53) == expected  # the current version
    assert build_prompt(spec_state(), 0.53, version=2) == expected
    buyer = PromptState(1, 20, 0.8421, None, role="buyer")
    assert "\n<RESERVATION_NORM> buyer:0.8421\n" in build_prompt(buyer, 0.5)
    # Same reservation, other side: the two prompts differ (version 1 could not tell them apart).
    seller = PromptState(1, 20, 0.8421, None, role="seller")
    assert build_prompt(buyer, 0.5) != build_prompt(seller, 0.5)
    assert build_prompt(buyer, 0.5, version=1) == build_prompt(seller, 0.5, version=1)


def test_version_2_needs_the_side_and_unknown_versions_are_refused() -> None:
    state = PromptState(1, 20, 0.5, None)
    with pytest.raises(ValueError, match="version 2 shows the decider's side"):
        build_prompt(state, 0.5)
    with pytest.raises(ValueError, match="unknown prompt version 3"):
        build_prompt(spec_state(), 0.5, version=3)
    with pytest.raises(ValueError, match="role must be one of"):
        PromptState(1, 20, 0.5, None, role="broker")


def test_golden_impasse_and_no_offer_yet() -> None:
    state = PromptState(turn=1, max_turns=20, reservation_norm=0.25, last_offer_norm=None)
    expected = (
        "<RHO> <RHO_FAIL>\n"
        "<TURN> 1 / 20\n"
        "<TURNS_REMAINING> 19\n"
        "<RESERVATION_NORM> 0.2500\n"
        "<LAST_OFFER_NORM> NONE\n"
        "<HISTORY> " + " ".join(["PAD:0.0000"] * 8) + "\n" + INSTRUCTION_LINES
    )
    assert build_prompt(state, -1.0, version=1) == expected


def test_golden_history_longer_than_k_keeps_the_last_k() -> None:
    history = tuple(("buyer" if i % 2 == 0 else "seller", i / 10) for i in range(10))
    state = PromptState(20, 20, 0.6, 0.9, history)
    expected = (
        "<RHO> 1.00\n"
        "<TURN> 20 / 20\n"
        "<TURNS_REMAINING> 0\n"
        "<RESERVATION_NORM> 0.6000\n"
        "<LAST_OFFER_NORM> 0.9000\n"
        "<HISTORY> buyer:0.2000 seller:0.3000 buyer:0.4000 seller:0.5000 buyer:0.6000 "
        "seller:0.7000 buyer:0.8000 seller:0.9000\n" + INSTRUCTION_LINES
    )
    assert build_prompt(state, 1.0, version=1) == expected
    # An explicit smaller k: the last 3 offers, no padding.
    short = build_prompt(state, 1.0, k=3, version=1)
    assert "<HISTORY> seller:0.7000 buyer:0.8000 seller:0.9000\n" in short


def test_golden_k_zero_and_blind() -> None:
    expected = (
        "<RHO>\n"
        "<TURN> 7 / 20\n"
        "<TURNS_REMAINING> 13\n"
        "<RESERVATION_NORM> 0.8421\n"
        "<LAST_OFFER_NORM> 0.4123\n"
        "<HISTORY>\n" + INSTRUCTION_LINES
    )
    assert build_prompt(spec_state(), None, k=0, version=1) == expected
    with pytest.raises(ValueError, match="k must be"):
        build_prompt(spec_state(), 0.5, k=-1)


def test_rho_zero_and_negative_zero_values_render_plainly() -> None:
    state = PromptState(2, 10, -0.00001, 0.0, (("seller", 0.0),), role="buyer")
    text = build_prompt(state, 0.0, k=1)
    assert text.startswith("<RHO> 0.00\n")
    assert "<RESERVATION_NORM> buyer:0.0000\n" in text  # never "-0.0000"
    assert "<HISTORY> seller:0.0000\n" in text


def test_prompt_shape_invariants() -> None:
    text = build_prompt(spec_state(), 0.1)
    assert text.endswith("<OUTPUT>")
    lines = text.split("\n")
    assert len(lines) == 10
    for token in SPECIAL_TOKENS[:-1]:
        assert sum(line.startswith(token + " ") or line == token for line in lines) == 1
    assert "<RHO_FAIL>" not in text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.534, 0.53),
        (0.536, 0.54),
        (0.0, 0.0),
        (1.0, 1.0),
        (-1.0, -1.0),
        (0.999, 1.0),
        (np.float32(0.25), 0.25),
        (np.float64(0.7), 0.7),
        (1, 1.0),
    ],
)
def test_canonical_rho(value: float, expected: float) -> None:
    assert canonical_rho(value) == expected
    assert isinstance(canonical_rho(value), float)


@pytest.mark.parametrize("value", [1.01, -0.5, -1.0001, math.nan, math.inf, -math.inf, "0.5", True])
def test_canonical_rho_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="rho"):
        canonical_rho(value)  # type: ignore[arg-type]


def test_canonical_rho_error_names_the_value() -> None:
    with pytest.raises(ValueError, match=r"1\.7"):
        canonical_rho(1.7)


def test_text_and_numeric_rho_agree() -> None:
    for raw in np.linspace(0, 1, 201):
        value = canonical_rho(float(raw))
        line = build_prompt(spec_state(), float(raw)).split("\n")[0]
        assert line == f"<RHO> {value:.2f}"
        assert float(line.split()[1]) == value


def test_state_validation() -> None:
    with pytest.raises(ValueError, match="turn"):
        PromptState(0, 20, 0.5, None)
    with pytest.raises(ValueError, match="turn"):
        PromptState(21, 20, 0.5, None)
    with pytest.raises(ValueError, match="role"):
        PromptState(3, 20, 0.5, 0.4, (("broker", 0.4),))


def test_state_from_row() -> None:
    row = {
        "turn": 7,
        "turns_remaining": 13,
        "max_turns": 20,
        "reservation_norm": 0.8421,
        "last_offer_norm": 0.4123,
        "history_roles": ["buyer", "seller", "buyer"],
        "history_prices_norm": [0.3, 0.4, 0.42],
        "rho_train": 0.53,
        "split": "train",
        "role": "seller",
    }
    assert PromptState.from_row(row) == spec_state()
    assert PromptState.from_row({**row, "last_offer_norm": None}).last_offer_norm is None
    assert PromptState.from_row({**row, "last_offer_norm": math.nan}).last_offer_norm is None
    numpy_row = {
        **row,
        "history_roles": np.array(["buyer"]),
        "history_prices_norm": np.array([0.3]),
    }
    assert PromptState.from_row(numpy_row).history == (("buyer", 0.3),)
    with pytest.raises(ValueError, match="turns_remaining"):
        PromptState.from_row({**row, "turns_remaining": 12})
    with pytest.raises(ValueError, match="same length"):
        PromptState.from_row({**row, "history_prices_norm": [0.3]})


def test_build_target() -> None:
    assert build_target("ACCEPT") == "ACCEPT"
    assert build_target("ACCEPT", None) == "ACCEPT"
    assert build_target("ACCEPT", math.nan) == "ACCEPT"  # parquet null read as NaN
    assert build_target("OFFER", 0.4213) == "OFFER 0.4213"
    assert build_target("OFFER", 0.42126) == "OFFER 0.4213"
    assert build_target("OFFER", 0) == "OFFER 0.0000"
    assert build_target("OFFER", 1.0) == "OFFER 1.0000"
    for bad in (1.2, -0.1, math.nan, None):
        with pytest.raises(ValueError, match="OFFER"):
            build_target("OFFER", bad)
    with pytest.raises(ValueError, match="no price"):
        build_target("ACCEPT", 0.4)
    with pytest.raises(ValueError, match="action"):
        build_target("REJECT", 0.4)


def test_parse_action_round_trips_every_target() -> None:
    assert parse_action("ACCEPT") == ParsedAction("ACCEPT", None)
    assert parse_action("OFFER 0.4213") == ParsedAction("OFFER", 0.4213)
    for price in np.linspace(0, 1, 1001):
        target = build_target("OFFER", float(price))
        assert OUTPUT_PATTERN.fullmatch(target)
        parsed = parse_action(target)
        assert parsed.kind == "OFFER"
        assert parsed.price_norm == pytest.approx(float(price), abs=5e-5)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "accept",
        " ACCEPT",
        "ACCEPT\n",
        "ACCEPT ",
        "OFFER",
        "OFFER 0.42",
        "OFFER 0.42130",
        "OFFER  0.4213",
        "OFFER 1.0001",
        "OFFER 1.5000",
        "OFFER -0.1000",
        "OFFER .4213",
        "OFFER 0,4213",
        "ACCEPTOFFER 0.1000",
        "OFFER 0.4213</s>",
    ],
)
def test_parse_action_is_strict(text: str) -> None:
    assert not OUTPUT_PATTERN.fullmatch(text)
    with pytest.raises(ValueError, match="not a valid action"):
        parse_action(text)
