"""The digits CNN trained through the NNX front end (``jaxlayers.nnx``).

    python examples/train_classifier.py --config configs/digits_cnn_nnx.yaml

Same config, data, network and optimizer as the linen trainer in
``train_classifier.py``: the network is the one ``build_model`` writes with
``jaxlayers.nn``, turned into NNX modules by ``jaxlayers.nnx.from_linen`` (one
definition of the architecture for both front ends).  The model is a stateful
object: ``model.train()`` / ``model.eval()`` switch BatchNorm and Dropout,
``nnx.Optimizer`` updates the parameters in place, and the running statistics
update inside the step.  The training step runs under ``nnx.jit`` with
``nnx.cached_partial`` (flax's way of skipping the per-call graph traversal in a
loop; it freezes the graph, so it is bound to the model in training mode) and
evaluation under plain ``nnx.jit`` after ``model.eval()``.  Single device.

Writes under ``output.dir``: ``metrics.jsonl``, ``config.yaml`` and
``model.safetensors`` (``model.state_dict()``: torch's keys, loads in torch).
No checkpoints (so no resuming), no plots, one device: a config must say so
(``train.num_devices: 1``, ``output.checkpoint/resume/plots: false``, see
``configs/digits_cnn_nnx.yaml``); any other value of those keys, of
``train.max_epochs_this_run`` or of ``checkpoint.keep`` is a config error
(:func:`check_config`) rather than silently ignored.
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any, Callable

import numpy as np

from jaxlayers_examples.checkpoint import CheckpointConfig

# The keys whose feature this front end lacks, each with the only value it accepts (the one that
# says what it does) and why: any other value is a config error, not silently ignored.
UNSUPPORTED = {
    "train.num_devices": (1, "it trains on one device"),
    "train.max_epochs_this_run": (None, "it cannot resume a run"),
    "output.checkpoint": (False, "it writes no checkpoints"),
    "output.resume": (False, "it cannot resume a run"),
    "output.plots": (False, "it draws no plots"),
    "checkpoint.keep": (CheckpointConfig().keep, "it writes no checkpoints"),  # the default
}


def check_config(cfg: Any) -> None:
    """Raise ``ConfigError`` if ``cfg`` (a ``train_classifier.Config``) asks for a feature of the
    linen trainer this front end lacks (:data:`UNSUPPORTED`)."""
    import yaml

    from jaxlayers_examples.config import ConfigError

    def value(key):
        section, name = key.split(".")
        return getattr(getattr(cfg, section), name)

    def show(v):
        return yaml.safe_dump(v).splitlines()[0]  # YAML's spelling: null, false, 1

    bad = [f"{key}={show(value(key))} ({why})" for key, (want, why) in UNSUPPORTED.items() if value(key) != want]
    if bad:
        fix = ", ".join(f"{key}: {show(want)}" for key, (want, _) in UNSUPPORTED.items())
        raise ConfigError(f"model.frontend=nnx does not support {'; '.join(bad)}; with the NNX front end set {fix}")


def build_nnx_model(cfg: Any, seed: int = 0):
    """The linen trainer's CNN (``train_classifier.build_model``) as NNX modules."""
    from flax import nnx as fnnx

    from jaxlayers import nnx
    from train_classifier import build_model

    return nnx.from_linen(build_model(cfg), rngs=fnnx.Rngs(params=seed, dropout=seed + 1))


def make_steps(model: Any, optimizer: Any, label_smoothing: float = 0.0,
               memory_format: str = "contiguous") -> tuple[Callable, Callable]:
    """``train_step(x, y) -> metrics`` and ``eval_step(x, y, weight) -> sums``, bound to the model."""
    import jax.numpy as jnp
    from flax import nnx as fnnx

    from jaxlayers import functional as F
    from train_classifier import in_layout

    def criterion(logits, y):
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing)

    @fnnx.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            logits = in_layout(memory_format, model, x)
            return criterion(logits, y), logits

        (loss, logits), grads = fnnx.value_and_grad(loss_fn, has_aux=True)(model)
        optimizer.update(model, grads)
        return {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}

    @fnnx.jit
    def eval_step(model, x, y, weight):
        logits = in_layout(memory_format, model, x)
        losses = F.cross_entropy(logits, y, reduction="none")
        return {"loss_sum": jnp.sum(losses * weight), "correct": jnp.sum((jnp.argmax(logits, -1) == y) * weight)}

    # cached_partial freezes the graph it is given, modes included: the training step is bound to the
    # model in training mode; evaluation (a few calls per epoch) takes the model as it is.
    model.train()
    return fnnx.cached_partial(train_step, model, optimizer), lambda x, y, w: eval_step(model, x, y, w)


def train_nnx(cfg: Any, out_dir: pathlib.Path | None = None, log: Callable = print) -> tuple[Any, list[dict]]:
    """Train ``cfg`` (a ``train_classifier.Config``) with the NNX front end; returns ``(model, history)``."""
    import jax
    from flax import nnx as fnnx

    from jaxlayers import interop
    from train_classifier import advance, load_data, make_optimizer, progress_bar, steps_per_epoch as count_steps

    x_train, y_train, x_test, y_test = load_data(cfg.data)
    bs = cfg.train.batch_size
    steps_per_epoch = count_steps(len(x_train), bs)
    model = build_nnx_model(cfg.model, cfg.train.seed)
    tx, lr_schedule = make_optimizer(cfg.optim, steps_per_epoch, cfg.train.epochs)
    optimizer = fnnx.Optimizer(model, tx, wrt=fnnx.Param)
    train_step, eval_step = make_steps(model, optimizer, cfg.train.label_smoothing, cfg.model.memory_format)

    def evaluate() -> dict:
        model.eval()
        ebs, n, loss_sum, correct = cfg.train.eval_batch_size, len(x_test), 0.0, 0.0
        for start in range(0, n, ebs):
            x, y = x_test[start: start + ebs], y_test[start: start + ebs]
            pad = ebs - len(x)
            w = np.concatenate([np.ones(len(x), np.float32), np.zeros(pad, np.float32)])
            out = jax.device_get(eval_step(np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]),
                                           np.concatenate([y, np.zeros(pad, y.dtype)]), w))
            loss_sum, correct = loss_sum + float(out["loss_sum"]), correct + float(out["correct"])
        return {"test_loss": loss_sum / n, "test_accuracy": correct / n}

    history: list[dict] = []
    for epoch in range(cfg.train.epochs):
        model.train()
        order = np.random.default_rng((cfg.train.seed, epoch)).permutation(len(x_train))
        sums, t0 = {"loss": 0.0, "accuracy": 0.0}, time.perf_counter()
        bar = progress_bar(steps_per_epoch, f"epoch {epoch + 1}/{cfg.train.epochs}") if cfg.output.progress else None
        for i in range(steps_per_epoch):
            idx = order[i * bs: (i + 1) * bs]
            metrics = jax.device_get(train_step(x_train[idx], y_train[idx]))
            for k in sums:
                sums[k] += float(metrics[k])
            advance(bar, sums, i + 1)
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - t0
        row = {"epoch": epoch + 1, "train_loss": sums["loss"] / steps_per_epoch,
               "train_accuracy": sums["accuracy"] / steps_per_epoch,
               "samples_per_second": steps_per_epoch * bs / seconds, "epoch_seconds": seconds,
               **evaluate(), "lr": float(lr_schedule(int(optimizer.step[...])))}
        history.append(row)
        log(f"epoch {epoch + 1:3d}/{cfg.train.epochs}  train loss {row['train_loss']:.4f} acc "
            f"{row['train_accuracy']:.4f}  test loss {row['test_loss']:.4f} acc {row['test_accuracy']:.4f}"
            f"  ({row['samples_per_second']:.0f} samples/s)")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "metrics.jsonl", "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in history)
        interop.save_safetensors(out_dir / "model.safetensors", model.state_dict())
    return model, history


def main_nnx(cfg: Any) -> int:
    """``train_classifier.py``'s entry point when ``model.frontend: nnx``."""
    import yaml

    from jaxlayers_examples.config import to_dict

    out_dir = pathlib.Path(cfg.output.dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    print(f"digits CNN (NNX front end), output in {out_dir}")
    t0 = time.perf_counter()
    _, history = train_nnx(cfg, out_dir)
    final = history[-1]
    print(f"done in {time.perf_counter() - t0:.1f} s: test accuracy {final['test_accuracy']:.4f} "
          f"(loss {final['test_loss']:.4f}) after {final['epoch']} epochs")
    print(f"wrote {out_dir / 'metrics.jsonl'}, {out_dir / 'model.safetensors'}")
    return 0
