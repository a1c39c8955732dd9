"""Fixed image filters in a ``jaxlayers.nn.Conv2d``, then ``AvgPool2d(2, 2)``.

    python examples/filter_image.py --config configs/filter_image.yaml [key=value ...]

Each kernel (sharpen, blur, Sobel x/y and the Sobel gradient magnitude) is
loaded into a ``Conv2d(1, 1, 3, padding=1, padding_mode="reflect", bias=False)``
through ``jaxlayers.interop`` — exactly as one would copy it into a torch
layer's ``state_dict`` — and run on every colour channel of a photo that ships
with scikit-learn (``sklearn.datasets.load_sample_image``).  Writes
``original.png``, ``<filter>.png`` and ``<filter>_pooled.png`` (after
``AvgPool2d(2, 2)``) plus ``filters.png``, a before/after grid.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys

import numpy as np

from jaxlayers_examples.config import ConfigError, load_config


def _sharpen() -> np.ndarray:
    """Unsharp masking: the image plus its detail (the image minus its local 3x3 mean), a kernel that
    sums to 1 so that flat regions keep their brightness."""
    k = np.full((3, 3), -1.0 / 9.0)
    k[1, 1] += 2.0
    return k


KERNELS = {
    "sharpen": _sharpen(),
    "blur": np.full((3, 3), 1.0 / 9.0),
    "sobel_x": np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]),
    "sobel_y": np.array([[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]]),
}
DERIVED = {"edges"}  # sqrt(sobel_x^2 + sobel_y^2)


@dataclasses.dataclass
class Config:
    image: str = "china.jpg"  # china.jpg or flower.jpg (scikit-learn's sample images)
    filters: list[str] = dataclasses.field(default_factory=lambda: ["sharpen", "blur", "sobel_x", "sobel_y", "edges"])
    pool: int = 2
    crop: int = 0  # 0: the whole image; >= 2: the central crop x crop pixels (quick runs)
    output_dir: str = "outputs/filter_image"

    def validate(self) -> None:
        unknown = [f for f in self.filters if f not in KERNELS and f not in DERIVED]
        if unknown:
            raise ConfigError(f"filters: unknown {unknown}; known: {sorted(KERNELS) + sorted(DERIVED)}")
        if self.pool < 1:
            raise ConfigError(f"pool must be >= 1, got {self.pool}")
        if self.crop < 0 or self.crop == 1:  # reflect padding needs >= 2 pixels per side length
            raise ConfigError(f"crop must be 0 (the whole image) or >= 2, got {self.crop}")
        if self.crop and self.pool > self.crop:
            raise ConfigError(f"pool={self.pool} is larger than the crop={self.crop} it pools")


def load_image(name: str, crop: int = 0) -> np.ndarray:
    """``(3, H, W)`` float32 in [0, 1]."""
    from sklearn.datasets import load_sample_image

    img = load_sample_image(name).astype(np.float32) / 255.0
    if crop:
        h, w = img.shape[:2]
        img = img[(h - crop) // 2:(h + crop) // 2, (w - crop) // 2:(w + crop) // 2]
    return np.transpose(img, (2, 0, 1))


def filter_layer(kernel: np.ndarray):
    """A Conv2d holding ``kernel`` and its variables, loaded like a torch state_dict."""
    from jaxlayers import interop, nn

    conv = nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect", bias=False)
    variables = interop.state_dict_to_variables({"weight": kernel.astype(np.float32)[None, None]})
    return conv, variables


def apply_filters(image: np.ndarray, names: list[str], pool: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{name: (filtered (3, H, W), pooled (3, H/pool, W/pool))}``; channels are the batch."""
    import jax

    from jaxlayers import nn

    x = image[:, None]  # (3, 1, H, W): each colour channel filtered alike
    pooler = nn.AvgPool2d(pool, pool)
    outs, cache = {}, {}

    def run(name):
        if name not in cache:
            conv, variables = filter_layer(KERNELS[name])
            cache[name] = jax.jit(conv.apply)(variables, x)
        return cache[name]

    for name in names:
        y = jax.numpy.sqrt(run("sobel_x") ** 2 + run("sobel_y") ** 2) if name == "edges" else run(name)
        outs[name] = (np.asarray(y[:, 0]), np.asarray(pooler.apply({}, y)[:, 0]))
    return outs


def to_display(img: np.ndarray) -> np.ndarray:
    """(3, H, W) -> (H, W, 3) in [0, 1], rescaled per image when outside [0, 1]."""
    img = np.transpose(img, (1, 2, 0))
    lo, hi = img.min(), img.max()
    if lo < 0 or hi > 1:
        img = (img - lo) / max(hi - lo, 1e-12)
    return np.clip(img, 0, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "filter_image.yaml"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(Config, args.config, args.overrides)
    except ConfigError as e:
        print(f"error: bad config: {e}", file=sys.stderr)
        return 2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        image = load_image(cfg.image, cfg.crop)
    except Exception as e:  # sklearn raises AttributeError/FileNotFoundError for unknown names
        print(f"error: cannot load sample image {cfg.image!r}: {e}", file=sys.stderr)
        return 2
    out = pathlib.Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    plt.imsave(out / "original.png", to_display(image))
    results = apply_filters(image, cfg.filters, cfg.pool)
    fig, axes = plt.subplots(2, len(results) + 1, figsize=(3 * (len(results) + 1), 5.5), squeeze=False)
    axes[0, 0].imshow(to_display(image))
    axes[0, 0].set_title(f"original {image.shape[1]}x{image.shape[2]}")
    axes[1, 0].axis("off")
    for i, (name, (full, pooled)) in enumerate(results.items(), start=1):
        plt.imsave(out / f"{name}.png", to_display(full))
        plt.imsave(out / f"{name}_pooled.png", to_display(pooled))
        axes[0, i].imshow(to_display(full))
        axes[0, i].set_title(name)
        axes[1, i].imshow(to_display(pooled))
        axes[1, i].set_title(f"AvgPool2d({cfg.pool}) {pooled.shape[1]}x{pooled.shape[2]}")
        print(f"{name:8s} filtered {full.shape} -> pooled {pooled.shape}")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out / "filters.png", dpi=80)
    plt.close(fig)
    print(f"wrote {len(results) * 2 + 2} PNGs to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
