"""Pure-PyTorch ops, each next to a naive reference used by the tests."""

from matchdetr.ops.ms_deform_attn import ms_deform_attn, ms_deform_attn_naive

__all__ = ["ms_deform_attn", "ms_deform_attn_naive"]
