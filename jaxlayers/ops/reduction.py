"""Reductions with torch semantics: mean, sum, var, std, max, min."""

from __future__ import annotations

__all__: list[str] = []
