"""Gated DeltaNet ops (naive oracle, chunked PyTorch, Triton); see README.md."""
from had.kernels.gated_delta.ops import GDNInputs, bidirectional_gated_delta_rule, gated_delta_rule

__all__ = ["GDNInputs", "bidirectional_gated_delta_rule", "gated_delta_rule"]
