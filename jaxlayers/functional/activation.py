"""Activation functions with torch's semantics and gradients at the kinks."""

from __future__ import annotations

__all__: list[str] = []
