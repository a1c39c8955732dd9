"""Max, average, adaptive, LP pooling and max unpooling."""

from __future__ import annotations

__all__: list[str] = []
