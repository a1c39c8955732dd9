"""mm, bmm, matmul with torch's rank checks."""

from __future__ import annotations

__all__: list[str] = []
