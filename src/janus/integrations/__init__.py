"""Bridges between Janus and other negotiation platforms (optional extras, imported lazily)."""
