"""longvila-r1: reinforcement learning for long-video reasoning with Lightning."""

__version__ = "0.1.0"
