"""The classifier's data: scikit-learn's 8x8 digits, split and standardised."""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np

from .config import ConfigError

__all__ = ["DataConfig", "load_data"]


@dataclasses.dataclass
class DataConfig:
    dataset: str = "digits"  # sklearn.datasets.load_digits: 1797 8x8 images, ships with scikit-learn
    test_fraction: float = 0.25
    subset: Optional[int] = None  # use only this many samples (quick runs)
    split_seed: int = 0

    def validate(self) -> None:
        if self.dataset != "digits":
            raise ConfigError(f"data.dataset: only 'digits' (scikit-learn's embedded digits) is available, got {self.dataset!r}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"data.test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.subset is not None:
            if self.subset < 1:
                raise ConfigError(f"data.subset must be >= 1 (or null: every sample), got {self.subset}")
            if self.subset - math.ceil(self.test_fraction * self.subset) < 1:  # scikit-learn's split
                raise ConfigError(f"data.subset={self.subset} leaves no training sample "
                                  f"with data.test_fraction={self.test_fraction}")


def load_data(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits as ``(N, 1, 8, 8)`` float32 (standardised with train statistics) and int labels."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:
        raise SystemExit(f"error: the digits data ship with scikit-learn, which is not installed ({e}); "
                         "install the examples extra: pip install -e '.[examples]'") from None
    digits = load_digits()
    x = digits.images.astype(np.float32)[:, None] / 16.0
    y = digits.target.astype(np.int32)
    if cfg.subset is not None:
        x, y = x[: cfg.subset], y[: cfg.subset]
    try:
        x_tr, x_te, y_tr, y_te = train_test_split(
            x, y, test_size=cfg.test_fraction, random_state=cfg.split_seed, stratify=y if cfg.subset is None else None
        )
    except ValueError as e:  # a stratified split needs a sample of every class on each side
        raise ConfigError(f"data.test_fraction={cfg.test_fraction}: {e}") from None
    mean, std = x_tr.mean(), x_tr.std()
    return (x_tr - mean) / std, y_tr, (x_te - mean) / std, y_te
