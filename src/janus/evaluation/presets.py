"""Named sizes of an evaluation, so a CPU run and a full benchmark are one word apart.

A preset only fills :class:`~janus.evaluation.harness.EvaluationConfig` fields; options given
explicitly (CLI flags, keyword arguments) win over it. Episodes stay paired across presets
of the same seed: a cell's episodes depend on (seed, opponent, role, index) alone, so a
smaller preset plays a prefix of a bigger one's cells.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from janus.evaluation.harness import EvaluationConfig

EVALUATION_PRESETS: tuple[str, ...] = ("full", "cpu-demo", "cpu-real", "negmas")


def evaluation_preset(name: str) -> dict[str, Any]:
    """The field values of preset ``name``.

    - ``full``: the whole benchmark (the :class:`EvaluationConfig` defaults).
    - ``cpu-demo``: what ``janus demo`` plays with janus-tiny (every opponent, 2 episodes a
      cell, ablations and scripted baselines included; about 5,000 episodes).
    - ``cpu-real``: a 135M-parameter base on 2 CPU cores: the held-out opponents only, 4
      episodes a cell, the five configurations and the ρ* sweep without ablations (640
      episodes), base weights in the dtype the adapter trained with, 2 threads.
    - ``negmas``: NegMAS's built-in negotiators (``janus.integrations.negmas.DEFAULT_OPPONENTS``,
      the ``negmas`` extra) as a second held-out set, each of them also in Janus's seat
      against the same opponents; 2 episodes a cell, no ablations (about 900 episodes with a
      calibration map). The run's ``--opponents`` may name other ones.
    """
    if name == "full":
        return {}
    if name == "cpu-demo":
        return {"episodes_per_cell": 2, "sweep_episodes_per_cell": 2}
    if name == "cpu-real":
        from janus.strategies import held_out_pool

        return {
            "opponents": tuple(held_out_pool()),
            "episodes_per_cell": 4,
            "sweep_episodes_per_cell": 4,
            "ablations": False,
            "scripted_baselines": False,
            "dtype": "auto",
            # At 135M parameters the matmuls are large enough for a second thread to pay
            # (janus-tiny's are not; there one thread is the safe default).
            "threads": 2,
        }
    if name == "negmas":
        from janus.integrations.negmas import DEFAULT_OPPONENTS

        return {
            "opponents": DEFAULT_OPPONENTS,
            "held_out": DEFAULT_OPPONENTS,
            "baseline_strategies": DEFAULT_OPPONENTS,
            "episodes_per_cell": 2,
            "sweep_episodes_per_cell": 2,
            "ablations": False,
        }
    raise ValueError(f"unknown evaluation preset {name!r}; choose from {list(EVALUATION_PRESETS)}")


def apply_evaluation_preset(
    preset: str | None, overrides: dict[str, Any] | None = None
) -> EvaluationConfig:
    """An :class:`EvaluationConfig` from a preset, then the explicit ``overrides`` (``None``
    values are ignored, so unset CLI options keep the preset's value)."""
    values = evaluation_preset(preset) if preset is not None else {}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {f.name for f in dataclasses.fields(EvaluationConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown evaluation option(s): {', '.join(unknown)}")
    return EvaluationConfig(**values)
