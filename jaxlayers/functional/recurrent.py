"""Recurrent cells and layers (the numerics behind nn.RNN/LSTM/GRU and their cells)."""

from __future__ import annotations

__all__: list[str] = []
