"""The named parts of training, shared by HyperLoRA training and janus-tiny pretraining.

- :mod:`~janus.training.loop`: the one optimisation loop (accumulation, clipping, optimiser
  and scheduler steps, the data position, the progress bar) and its callbacks (logging,
  periodic validation, checkpoints).
- :mod:`~janus.training.losses`: the causal-LM loss on the decision tokens, the gate
  separation term and the objective that combines them over an accumulation window.
- :mod:`~janus.training.schedules`: the learning-rate schedules, built from torch's.
- :mod:`~janus.training.state`: :class:`TrainState` (step, data position, best validation)
  and the RNG states, as JSON and tensors, never pickled.
- :mod:`~janus.training.checkpoints`: atomic checkpoints with the optimiser and scheduler,
  the latest one for an exact resume, rotation.
- :mod:`~janus.training.distributed`: where this process sits under ``torchrun``, and the
  few collective operations the loop needs.
- :mod:`~janus.training.validation`: validation loss (per ρ bucket) and greedy action metrics.

:func:`janus.train.train` composes these for HyperLoRA; :func:`janus.tiny.pretrain_tiny_base`
runs the same loop on a full-parameter model.
"""
