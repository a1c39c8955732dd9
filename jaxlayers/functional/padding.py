"""F.pad with torch's pad-tuple order and modes constant/reflect/replicate/circular."""

from __future__ import annotations

__all__: list[str] = []
