"""Linear, Bilinear, Identity, LazyLinear."""

from __future__ import annotations

__all__: list[str] = []
