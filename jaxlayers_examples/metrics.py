"""Metrics files of the example trainers."""

from __future__ import annotations

import json
import pathlib
from typing import Sequence


def write_jsonl(path: pathlib.Path, rows: Sequence[dict]) -> None:
    """One JSON object per line (rewritten whole, so a resumed run never duplicates rows)."""
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
