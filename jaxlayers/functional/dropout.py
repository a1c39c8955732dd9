"""Dropout family; randomness takes an explicit key."""

from __future__ import annotations

__all__: list[str] = []
