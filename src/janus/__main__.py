"""``python -m janus``: the same command as ``janus`` (what ``torchrun -m janus`` runs)."""

from janus.cli import main

main()
