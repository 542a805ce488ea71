"""Benchmark harness, calibration sweep, statistics, plots and report (``janus evaluate``).

The implementation lives in the :mod:`janus.evaluation` package; this module is its public
face. Typical use::

    from janus.evaluate import EvaluationConfig, evaluate, headline_table

    result = evaluate(EvaluationConfig(run="runs/janus", out="reports/janus"))
    print(headline_table(result.summary))

``summary.json`` holds ``calibration`` (the headline: held-out opponents), ``calibration_in_pool``,
``calibration_all``, ``ablations`` (per channel: both / text / weights, per opponent set),
``configurations`` (per configuration: agreement rate, utility, win/tie/loss, turns, validity
and safety counts with 95% bootstrap intervals, split by held-out/in-pool, role and opponent,
and the paired difference with the base model), ``invalid_actions``,
``agreements_outside_zopa``, ``safety``, ``concession`` and ``run`` (what was evaluated).
"""

from janus.evaluation import *  # noqa: F403
from janus.evaluation import __all__  # noqa: F401
