"""Convolution and transposed convolution (torch.nn.functional.conv*d / conv_transpose*d)."""

from __future__ import annotations

__all__: list[str] = []
