"""MaxPool*, MaxUnpool*, AvgPool*, Adaptive*Pool*, LPPool*."""

from __future__ import annotations

__all__: list[str] = []
