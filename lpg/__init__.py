"""lpg: discover reinforcement-learning objectives in JAX (online: FRODO, MGRL, STAC; offline: LPG)."""

__version__ = "0.1.0"
