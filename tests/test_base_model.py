"""The one rule for "local directory or hub id" that training and loading share."""

from __future__ import annotations

from pathlib import Path

import pytest

from janus.base_model import locate_base_model


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding bases/ready (a model directory) and bases/empty (none)."""
    (tmp_path / "bases" / "ready").mkdir(parents=True)
    (tmp_path / "bases" / "ready" / "config.json").write_text("{}")
    (tmp_path / "bases" / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_an_existing_model_directory_is_local_and_absolute(workdir: Path) -> None:
    assert locate_base_model("bases/ready") == workdir / "bases" / "ready"
    assert locate_base_model(Path("./bases/ready")) == workdir / "bases" / "ready"


@pytest.mark.parametrize(
    "reference", ["bases/x", "./x", "../x", "~/no-such-base", "/no/such", "a/b/c"]
)
def test_a_missing_path_that_looks_local_is_a_one_line_error_naming_it(workdir, reference):
    with pytest.raises(FileNotFoundError) as error:
        locate_base_model(reference)
    message = str(error.value)
    assert f"base model {reference}: no such local directory" in message and "\n" not in message


@pytest.mark.parametrize("reference", ["org/name", "gpt2", "HuggingFaceTB/SmolLM2-135M"])
def test_a_bare_name_or_org_name_missing_here_is_a_hub_id(workdir, reference):
    assert locate_base_model(reference) == reference


def test_a_directory_without_config_json_or_an_empty_reference_is_refused(workdir) -> None:
    with pytest.raises(FileNotFoundError, match=r"bases/empty: no config\.json in it"):
        locate_base_model("bases/empty")
    with pytest.raises(ValueError, match="empty reference"):
        locate_base_model(" ")
