"""The package as shipped: declared dependency ranges that the tested versions satisfy, and
the size rules of the source."""

from __future__ import annotations

import ast
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"


def declared(group: str | None = None) -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    lines = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return [Requirement(line) for line in lines]


def test_installed_versions_satisfy_the_declared_ranges() -> None:
    requirements = declared() + declared("dev") + declared("negmas")
    for requirement in requirements:
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            raise AssertionError(f"{requirement.name} is declared but not installed") from None
        assert requirement.specifier.contains(installed, prereleases=True), (
            f"{requirement.name} {installed} is outside {requirement.specifier}"
        )


def test_core_dependencies_are_bounded_where_a_major_would_break() -> None:
    ranges = {r.name: r.specifier for r in declared()}
    assert "2.13.0" in ranges["torch"]  # the Makefile's pinned build must satisfy the range
    for name, next_major in (("torch", "3"), ("transformers", "6"), ("numpy", "3")):
        assert next_major not in ranges[name], name
    assert "4.57.0" not in ranges["transformers"]  # the code uses the transformers 5 API
    assert "1.11.0" not in ranges["scipy"]  # isotonic_regression needs scipy 1.12


def test_negmas_is_an_optional_extra_never_a_core_dependency() -> None:
    # NegMAS is AGPL-3.0: the Apache-2.0 core must not require it
    assert "negmas" not in {r.name for r in declared()}
    assert "negmas" not in {r.name for r in declared("dev")}
    (negmas,) = declared("negmas")
    assert "0.16.0" in negmas.specifier and "0.17.0" not in negmas.specifier


def _body_lines(node: ast.FunctionDef) -> int:
    """Lines of a function after its signature (a CLI command's signature is its option
    table, data rather than logic)."""
    return node.end_lineno - node.body[0].lineno + 1


def test_no_function_in_the_library_is_over_60_lines() -> None:
    """The house rule of docs/ARCHITECTURE.md: a function does one job and reads on a screen.

    Typer commands count from their body: their long signatures are the option tables."""
    too_long = []
    for path in sorted((ROOT / "src" / "janus").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            is_command = any(
                isinstance(d, ast.Call) and getattr(d.func, "id", "") == "command"
                for d in node.decorator_list
            )
            length = _body_lines(node) if is_command else node.end_lineno - node.lineno + 1
            if length > 60:
                too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length})")
    assert not too_long, "functions over 60 lines: " + ", ".join(too_long)
