"""GDN ops for the student model. Imports no model code.

    from had.kernels import gated_delta_rule, bidirectional_gated_delta_rule, GDNInputs
"""
from had.kernels.gated_delta import GDNInputs, bidirectional_gated_delta_rule, gated_delta_rule

__all__ = ["GDNInputs", "bidirectional_gated_delta_rule", "gated_delta_rule"]
