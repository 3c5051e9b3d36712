"""had: Hybrid Architecture Distillation for tiny, fast DNA language models."""

__version__ = "0.1.0"
