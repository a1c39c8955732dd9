"""BatchNorm*, LayerNorm, InstanceNorm*, GroupNorm, RMSNorm, LocalResponseNorm, SwitchNorm*."""

from __future__ import annotations

__all__: list[str] = []
