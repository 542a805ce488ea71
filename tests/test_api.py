"""The public API: ``from janus import ...`` works for every listed name and stays lazy."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import janus

# Names mapped in janus._LAZY whose module does not define them yet, because another branch
# is adding them. The integrator removes a name from here once its module has landed: the
# test below fails for a name that is listed here but already resolves.
PENDING_API_NAMES: frozenset[str] = frozenset()

HEAVY_MODULES = ("torch", "transformers", "numpy", "pyarrow", "matplotlib", "safetensors")


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter that imports this checkout's janus."""
    src = str(Path(janus.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return result.stdout.strip()


def test_import_janus_and_its_cli_import_no_heavy_module() -> None:
    code = (
        "import sys, janus, janus.cli\n"
        "names = janus.__all__, dir(janus)\n"
        f"print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules) or 'none')"
    )
    assert run_python(code) == "none"


def test_all_and_dir_list_the_lazy_table() -> None:
    assert janus.__all__ == ["__version__", *sorted(janus._LAZY)]
    assert len(set(janus.__all__)) == len(janus.__all__)
    assert set(janus.__all__) <= set(dir(janus))
    for name in ("JanusAgent", "inject_hyperlora", "evaluate", "TrainConfig", "DatasetReader"):
        assert name in janus.__all__


def test_pending_names_are_in_the_table_and_not_defined_yet() -> None:
    for name in PENDING_API_NAMES:
        assert name in janus._LAZY, f"{name} is pending but not in janus._LAZY"
        module = importlib.import_module(janus._LAZY[name])
        assert not hasattr(module, name), f"{name} has landed: remove it from PENDING_API_NAMES"


@pytest.mark.parametrize("name", sorted(set(janus._LAZY) - PENDING_API_NAMES))
def test_every_public_name_resolves_to_its_module_object(name: str) -> None:
    module = importlib.import_module(janus._LAZY[name])
    expected = getattr(module, name)
    assert getattr(janus, name) is expected
    assert not isinstance(expected, types.ModuleType)
    namespace: dict[str, object] = {}
    exec(f"from janus import {name}", namespace)
    assert namespace[name] is expected


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        _ = janus.not_a_name
    with pytest.raises(ImportError):
        exec("from janus import not_a_name", {})


def test_names_that_are_also_modules_stay_out_of_the_table() -> None:
    """``train``, ``refine``, ``generate``... name both a function and its module: binding the
    function on the package would shadow the module, so they are imported from the module."""
    for name in ("train", "refine", "generate", "prepare", "calibrate"):
        assert name not in janus._LAZY
    assert run_python("import janus.train as m; print(type(m).__name__)") == "module"


def test_evaluation_has_one_import_path() -> None:
    assert importlib.util.find_spec("janus.evaluate") is None  # the old re-export shim is gone
    from janus.evaluation import evaluate

    assert janus.evaluate is evaluate
