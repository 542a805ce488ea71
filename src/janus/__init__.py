"""Janus: continuously steerable negotiation agents.

One frozen causal language model, one small hypernetwork per adapted layer that turns the
requested outcome ρ into the gates of a LoRA adapter: a dial instead of a persona.
"""

__version__ = "0.1.0"
