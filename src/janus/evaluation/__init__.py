"""The evaluation of Janus: benchmark harness, calibration sweep, statistics, plots, report.

This package is the public face of ``janus evaluate``; its API is re-exported here::

    from janus.evaluation import EvaluationConfig, evaluate, headline_table

    result = evaluate(EvaluationConfig(run="runs/janus", out="reports/janus"))
    print(headline_table(result.summary))

``result.summary`` is an :class:`EvaluationSummary` (frozen records, what ``summary.json``
holds; read one back with :func:`load_summary`): ``calibration`` (the headline: held-out
opponents), ``calibration_in_pool``, ``calibration_all``, ``ablations`` (per channel: both /
text / weights, per opponent set), ``configurations`` (per configuration: agreement rate,
utility, win/tie/loss, turns, validity and safety counts with 95% bootstrap intervals, split by
held-out/in-pool, role and opponent, and the paired difference with the base model),
``invalid_actions``, ``agreements_outside_zopa``, ``safety``, ``habits``, ``concession`` and
``run`` (what was evaluated).

Modules:

- :mod:`~janus.evaluation.harness`: :class:`EvaluationConfig`, the paired episode plan
  (:func:`plan_episodes`), batched play (:func:`play_episodes`), :class:`EpisodeRecord`;
- :mod:`~janus.evaluation.stats`: Spearman, least squares, seeded bootstrap, calibration;
- :mod:`~janus.evaluation.summary_types`: the typed summary, its format version, reading it
  back; :mod:`~janus.evaluation.codec`: the records' JSON rules;
- :mod:`~janus.evaluation.summary`: episode records → :class:`EvaluationSummary`;
- :mod:`~janus.evaluation.tables`, :mod:`~janus.evaluation.plots` and
  :mod:`~janus.evaluation.report`: Markdown tables (:func:`headline_table`), figures, CSV,
  atomic report directory;
- :mod:`~janus.evaluation.compare`: reports of the same paired episodes side by side;
- :mod:`~janus.evaluation.presets`: named sizes (``full``, ``cpu-demo``, ``cpu-real``);
- :mod:`~janus.evaluation.runner`: :func:`evaluate`.
"""

from janus.evaluation.compare import compare_reports
from janus.evaluation.harness import (
    BASE,
    CHANNELS,
    DEFAULT_CONFIGURATIONS,
    DEFAULT_RHO_GRID,
    JANUS_CONFIGURATIONS,
    SCRIPTED_PREFIX,
    SWEEP,
    EpisodeRecord,
    EpisodeSpec,
    EvaluationConfig,
    EvaluationPlan,
    build_match,
    cell_seed,
    make_plan,
    plan_episodes,
    play_episodes,
    record_episode,
)
from janus.evaluation.presets import (
    EVALUATION_PRESETS,
    apply_evaluation_preset,
    evaluation_preset,
)
from janus.evaluation.report import render_report
from janus.evaluation.runner import (
    EvaluationResult,
    default_out_dir,
    evaluate,
)
from janus.evaluation.stats import (
    bootstrap_ci,
    calibration_stats,
    linear_fit,
    mean_ci,
    monotonicity_violations,
    rankdata,
    spearman,
)
from janus.evaluation.summary import summarize
from janus.evaluation.summary_types import EvaluationSummary, FormatError, load_summary
from janus.evaluation.tables import headline_table

__all__ = [
    "BASE",
    "CHANNELS",
    "DEFAULT_CONFIGURATIONS",
    "DEFAULT_RHO_GRID",
    "EVALUATION_PRESETS",
    "JANUS_CONFIGURATIONS",
    "SCRIPTED_PREFIX",
    "SWEEP",
    "EpisodeRecord",
    "EpisodeSpec",
    "EvaluationConfig",
    "EvaluationPlan",
    "EvaluationResult",
    "EvaluationSummary",
    "FormatError",
    "apply_evaluation_preset",
    "bootstrap_ci",
    "build_match",
    "calibration_stats",
    "cell_seed",
    "compare_reports",
    "default_out_dir",
    "evaluate",
    "evaluation_preset",
    "headline_table",
    "linear_fit",
    "load_summary",
    "make_plan",
    "mean_ci",
    "monotonicity_violations",
    "plan_episodes",
    "play_episodes",
    "rankdata",
    "record_episode",
    "render_report",
    "spearman",
    "summarize",
]
