"""Conv*d, ConvTranspose*d and their Lazy variants."""

from __future__ import annotations

__all__: list[str] = []
