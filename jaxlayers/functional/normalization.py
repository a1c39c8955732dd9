"""Normalisation functions: batch/layer/instance/group/RMS/local-response/switchable."""

from __future__ import annotations

__all__: list[str] = []
