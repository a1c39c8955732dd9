"""The main job: train a CNN built from ``jaxlayers.nn`` on scikit-learn's digits.

    python examples/train_classifier.py --config configs/digits_cnn.yaml [key=value ...]

The network is written as in torch (Conv2d, BatchNorm2d, ReLU, MaxPool2d,
AdaptiveAvgPool2d, Flatten, Dropout, Linear inside a Sequential), trained under
``jax.jit`` with optax and evaluated on a held-out split.  The batch is sharded
over all local devices (data parallel: BatchNorm sees the global batch).

Writes under ``output.dir``: ``metrics.jsonl`` (one line per epoch),
``training_curves.png``, ``feature_maps.png`` (first-layer responses),
``config.yaml``, ``model.safetensors`` (the trained model as a torch-keyed
state_dict) and ``checkpoint/`` (Orbax: the whole train state after each epoch,
saved in the background, the last ``checkpoint.keep`` kept).  Rerunning the
same command resumes from the last checkpoint; Ctrl-C keeps the last checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time
from collections import OrderedDict
from typing import Any, Callable, Optional

import numpy as np

from jaxlayers_examples.checkpoint import CheckpointConfig, Checkpointer, CheckpointMismatchError
from jaxlayers_examples.config import ConfigError, load_config, to_dict
from jaxlayers_examples.data import DataConfig, load_data
from jaxlayers_examples.metrics import write_jsonl
from jaxlayers_examples.plots import plot_curves

CHECKPOINT = "checkpoint"  # Orbax checkpoints, one numbered directory per epoch
MODEL_FILE = "model.safetensors"  # the trained model as a torch-keyed state_dict


# ------------------------------------------------------------------- config


@dataclasses.dataclass
class ModelConfig:
    channels: list[int] = dataclasses.field(default_factory=lambda: [32, 64])  # width per stage
    convs_per_stage: int = 2
    dropout: float = 0.2
    frontend: str = "linen"  # linen | nnx (examples/nnx_train.py)
    memory_format: str = "contiguous"  # contiguous | channels_last (jaxlayers.config.memory_format)

    def validate(self) -> None:
        from jaxlayers import config as jl_config

        if self.frontend not in ("linen", "nnx"):
            raise ConfigError(f"model.frontend must be 'linen' or 'nnx', got {self.frontend!r}")
        if self.memory_format not in jl_config.MEMORY_FORMATS:
            raise ConfigError(f"model.memory_format must be one of {jl_config.MEMORY_FORMATS}, "
                              f"got {self.memory_format!r}")
        if not self.channels or any(c <= 0 for c in self.channels):
            raise ConfigError(f"model.channels must be a non-empty list of positive ints, got {self.channels}")
        if self.convs_per_stage < 1:
            raise ConfigError(f"model.convs_per_stage must be >= 1, got {self.convs_per_stage}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")


@dataclasses.dataclass
class OptimConfig:
    name: str = "adamw"  # adamw | sgd
    lr: float = 3e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd only
    schedule: str = "cosine"  # cosine | constant
    warmup_epochs: int = 1

    def validate(self) -> None:
        if self.name not in ("adamw", "sgd"):
            raise ConfigError(f"optim.name must be 'adamw' or 'sgd', got {self.name!r}")
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError(f"optim.schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if not 0 < self.lr < float("inf"):
            raise ConfigError(f"optim.lr must be positive and finite, got {self.lr}")
        for name in ("weight_decay", "momentum"):
            if not 0 <= getattr(self, name) < float("inf"):
                raise ConfigError(f"optim.{name} must be >= 0 and finite, got {getattr(self, name)}")
        if self.warmup_epochs < 0:
            raise ConfigError(f"optim.warmup_epochs must be >= 0, got {self.warmup_epochs}")


@dataclasses.dataclass
class TrainConfig:
    batch_size: int = 64
    epochs: int = 12
    seed: int = 0
    num_devices: Optional[int] = None  # None: every local device
    eval_batch_size: int = 256
    max_epochs_this_run: Optional[int] = None  # stop after this many epochs (time-boxed jobs); rerun to resume
    label_smoothing: float = 0.0  # nn.CrossEntropyLoss(label_smoothing=...) for the training loss

    def validate(self) -> None:
        if self.batch_size <= 0 or self.epochs <= 0 or self.eval_batch_size <= 0:
            raise ConfigError("train.batch_size, train.epochs and train.eval_batch_size must be positive")
        if not 0.0 <= self.label_smoothing <= 1.0:
            raise ConfigError(f"train.label_smoothing must be in [0, 1], got {self.label_smoothing}")
        if self.num_devices is not None and self.num_devices < 1:
            raise ConfigError(f"train.num_devices must be >= 1 (or null: every local device), got {self.num_devices}")
        if self.max_epochs_this_run is not None and self.max_epochs_this_run < 0:
            raise ConfigError(f"train.max_epochs_this_run must be >= 0 (or null: no limit), "
                              f"got {self.max_epochs_this_run}")


@dataclasses.dataclass
class OutputConfig:
    dir: str = "outputs/digits_cnn"
    checkpoint: bool = True
    resume: bool = True
    plots: bool = True
    progress: bool = True


@dataclasses.dataclass
class Config:
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)

    def validate(self) -> None:
        if self.model.frontend == "nnx":
            from nnx_train import check_config

            check_config(self)


# -------------------------------------------------------------------- model


def build_model(cfg: ModelConfig, in_channels: int = 1, num_classes: int = 10):
    """The CNN, as one would write it with torch.nn."""
    from jaxlayers import nn

    layers: "OrderedDict[str, Any]" = OrderedDict()
    c = in_channels
    for s, width in enumerate(cfg.channels):
        for j in range(cfg.convs_per_stage):
            layers[f"conv{s}_{j}"] = nn.Conv2d(c, width, 3, padding=1, bias=False)
            layers[f"bn{s}_{j}"] = nn.BatchNorm2d(width)
            layers[f"relu{s}_{j}"] = nn.ReLU()
            c = width
        if s < len(cfg.channels) - 1:
            layers[f"pool{s}"] = nn.MaxPool2d(2)
    layers["gap"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["dropout"] = nn.Dropout(cfg.dropout)
    layers["fc"] = nn.Linear(c, num_classes)
    return nn.Sequential(layers)


def in_layout(memory_format: str, call: Callable[[Any], Any], x: Any) -> Any:
    """``call(x)`` for an ``(N, C, H, W)`` batch, traced in ``memory_format``: with
    ``"channels_last"`` the batch goes in as ``(N, H, W, C)`` (torch's
    ``x.to(memory_format=torch.channels_last)``) and every layer runs channels-last;
    the parameters are the same either way."""
    import jax.numpy as jnp

    from jaxlayers import config as jl_config

    with jl_config.memory_format(memory_format):
        return call(jnp.moveaxis(x, 1, -1) if memory_format == "channels_last" else x)


def steps_per_epoch(train_samples: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial one is dropped); a batch larger than the data is a config error."""
    if batch_size > train_samples:
        raise ConfigError(f"train.batch_size={batch_size} exceeds the {train_samples} training samples")
    return train_samples // batch_size


def make_optimizer(cfg: OptimConfig, steps_per_epoch: int, epochs: int):
    import optax

    total = steps_per_epoch * epochs
    warmup = min(cfg.warmup_epochs * steps_per_epoch, max(total - 1, 0))
    if cfg.schedule == "cosine":
        lr = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, warmup, max(total, warmup + 1))
    else:
        lr = optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, warmup), optax.constant_schedule(cfg.lr)], [warmup]) if warmup else optax.constant_schedule(cfg.lr)
    if cfg.name == "adamw":
        return optax.adamw(lr, weight_decay=cfg.weight_decay), lr
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay), optax.sgd(lr, momentum=cfg.momentum)), lr


# ------------------------------------------------------------------ trainer


class Trainer:
    """Holds the jitted steps, the sharding and the state; ``fit`` runs epochs."""

    def __init__(self, cfg: Config):
        import jax
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

        self.cfg = cfg
        self.x_train, self.y_train, self.x_test, self.y_test = load_data(cfg.data)
        devices = jax.local_devices()
        n = cfg.train.num_devices or len(devices)
        if n > len(devices):
            raise ConfigError(f"train.num_devices={n} but only {len(devices)} local devices exist")
        for name in ("batch_size", "eval_batch_size"):
            if getattr(cfg.train, name) % n:
                raise ConfigError(f"train.{name}={getattr(cfg.train, name)} must be divisible by the {n} devices")
        self.mesh = Mesh(np.array(devices[:n]), ("data",))
        self.batch_sharding = NamedSharding(self.mesh, P("data"))
        self.replicated = NamedSharding(self.mesh, P())
        self.steps_per_epoch = steps_per_epoch(len(self.x_train), cfg.train.batch_size)
        self.model = build_model(cfg.model)
        self.tx, self.lr_schedule = make_optimizer(cfg.optim, self.steps_per_epoch, cfg.train.epochs)
        self.dropout_key = jax.random.key(cfg.train.seed + 1)
        self._build_steps()

    # state -----------------------------------------------------------------
    def init_state(self) -> dict:
        import jax
        import jax.numpy as jnp

        variables = in_layout(self.cfg.model.memory_format,
                              lambda x: self.model.init(jax.random.key(self.cfg.train.seed), x, train=False),
                              jnp.zeros((1, 1, 8, 8), jnp.float32))
        state = {
            "params": variables["params"],
            "batch_stats": variables["batch_stats"],
            "opt_state": self.tx.init(variables["params"]),
            "step": jnp.zeros((), jnp.int32),
        }
        return jax.device_put(state, self.replicated)

    def _build_steps(self) -> None:
        import jax
        import jax.numpy as jnp
        import optax

        from jaxlayers import functional as F
        from jaxlayers import nn as jnn

        model, tx, dropout_key = self.model, self.tx, self.dropout_key
        fmt = self.cfg.model.memory_format
        criterion = jnn.CrossEntropyLoss(label_smoothing=self.cfg.train.label_smoothing)

        def train_step(state, x, y):
            key = jax.random.fold_in(dropout_key, state["step"])

            def loss_fn(params):
                logits, updates = in_layout(fmt, lambda x: model.apply(
                    {"params": params, "batch_stats": state["batch_stats"]}, x,
                    train=True, mutable=["batch_stats"], rngs={"dropout": key},
                ), x)
                return criterion(logits, y), (logits, updates["batch_stats"])

            (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
            updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
            new_state = {
                "params": optax.apply_updates(state["params"], updates),
                "batch_stats": batch_stats,
                "opt_state": opt_state,
                "step": state["step"] + 1,
            }
            metrics = {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}
            return new_state, metrics

        def eval_step(state, x, y, weight):
            logits = in_layout(fmt, lambda x: model.apply({"params": state["params"],
                                                           "batch_stats": state["batch_stats"]}, x, train=False), x)
            losses = F.cross_entropy(logits, y, reduction="none")
            return {"loss_sum": jnp.sum(losses * weight),
                    "correct": jnp.sum((jnp.argmax(logits, -1) == y) * weight)}

        b, r = self.batch_sharding, self.replicated
        self.train_step = jax.jit(train_step, in_shardings=(r, b, b), out_shardings=(r, r), donate_argnums=0)
        self.eval_step = jax.jit(eval_step, in_shardings=(r, b, b, b), out_shardings=r)

    # loops -------------------------------------------------------------------
    def epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng((self.cfg.train.seed, epoch)).permutation(len(self.x_train))

    def run_epoch(self, state: dict, epoch: int, progress: bool = False) -> tuple[dict, dict]:
        import jax

        bs = self.cfg.train.batch_size
        order = self.epoch_order(epoch)
        bar = progress_bar(self.steps_per_epoch, f"epoch {epoch + 1}/{self.cfg.train.epochs}") if progress else None
        sums = {"loss": 0.0, "accuracy": 0.0}
        t0 = time.perf_counter()
        for i in range(self.steps_per_epoch):
            idx = order[i * bs: (i + 1) * bs]
            x = jax.device_put(self.x_train[idx], self.batch_sharding)
            y = jax.device_put(self.y_train[idx], self.batch_sharding)
            state, metrics = self.train_step(state, x, y)
            metrics = jax.device_get(metrics)
            for k in sums:
                sums[k] += float(metrics[k])
            advance(bar, sums, i + 1)
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - t0
        return state, {
            "train_loss": sums["loss"] / self.steps_per_epoch,
            "train_accuracy": sums["accuracy"] / self.steps_per_epoch,
            "samples_per_second": self.steps_per_epoch * bs / seconds,
            "epoch_seconds": seconds,
        }

    def evaluate(self, state: dict) -> dict:
        import jax

        bs = self.cfg.train.eval_batch_size
        n = len(self.x_test)
        loss_sum = correct = 0.0
        for start in range(0, n, bs):
            x, y = self.x_test[start: start + bs], self.y_test[start: start + bs]
            pad = bs - len(x)
            w = np.concatenate([np.ones(len(x), np.float32), np.zeros(pad, np.float32)])
            x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
            y = np.concatenate([y, np.zeros(pad, y.dtype)])
            out = jax.device_get(self.eval_step(state, *(jax.device_put(a, self.batch_sharding) for a in (x, y, w))))
            loss_sum += float(out["loss_sum"])
            correct += float(out["correct"])
        return {"test_loss": loss_sum / n, "test_accuracy": correct / n}

    def fit(self, out_dir: pathlib.Path | None = None, log=print) -> tuple[dict, list[dict], int]:
        """Train up to ``train.epochs`` (at most ``train.max_epochs_this_run`` epochs in this call),
        resuming from ``out_dir``'s latest checkpoint under ``output.resume``.  Returns ``(state,
        history, ran)``: the state, the metrics of every epoch trained so far (restored ones included)
        and how many epochs this call ran.  Under ``out_dir``: ``config.yaml``, and once some epoch is
        trained (now or restored) ``metrics.jsonl`` and the model (``model.safetensors``)."""
        cfg = self.cfg
        state, history, start = self.init_state(), [], 0
        ckpt = None
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            if cfg.output.checkpoint or cfg.output.resume:
                ckpt = Checkpointer(out_dir / CHECKPOINT, keep=cfg.checkpoint.keep)
            if not cfg.output.resume and ckpt is not None and ckpt.all_steps():
                log(f"output.resume=false: deleting the previous run's checkpoints in {ckpt.directory}")
                ckpt.delete_all()
            if cfg.output.resume and ckpt.latest_step() is not None:
                state, history = restore_checkpoint(ckpt, state, cfg)
                start = len(history)
                log(f"resumed from {ckpt.directory / str(ckpt.latest_step())} after epoch {start}")
            (out_dir / "config.yaml").write_text(_yaml_dump(to_dict(cfg)))
            _write_metrics(out_dir, history)
        ran = 0
        try:
            for epoch in range(start, cfg.train.epochs):
                if cfg.train.max_epochs_this_run is not None and ran >= cfg.train.max_epochs_this_run:
                    log(f"stopping after {ran} epochs (train.max_epochs_this_run); rerun to resume")
                    break
                state, row = self.run_epoch(state, epoch, progress=cfg.output.progress)
                row = {"epoch": epoch + 1, **row, **self.evaluate(state), "lr": float(self.lr_schedule(int(state["step"])))}
                history.append(row)
                ran += 1
                log(f"epoch {epoch + 1:3d}/{cfg.train.epochs}  train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f}"
                    f"  test loss {row['test_loss']:.4f} acc {row['test_accuracy']:.4f}  ({row['samples_per_second']:.0f} samples/s)")
                if out_dir is not None:
                    _write_metrics(out_dir, history)
                    if cfg.output.checkpoint:
                        save_checkpoint(ckpt, state, history, cfg)
        except KeyboardInterrupt:
            if ckpt is not None:
                ckpt.wait()  # the save in flight completes: it is the last checkpoint
            last = ckpt.latest_step() if ckpt is not None else None
            where = ckpt.directory / str(last) if last is not None else None
            log(f"\ninterrupted during epoch {len(history) + 1}; "
                + (f"last checkpoint {where} is kept: rerun the same command to resume"
                   if where else "no checkpoint was written yet"))
            raise
        finally:
            if ckpt is not None:
                ckpt.close()
        if out_dir is not None and history:  # an untrained model is not exported
            export_model(out_dir / MODEL_FILE, state)
        return state, history, ran


# --------------------------------------------------------------- checkpoints


# What a resumed run may change: how it runs, not what it trains (the data split, the steps per epoch,
# the schedule, the model and the seed would otherwise change under a half-trained state).
_RESUMABLE_CHANGES = ("output.", "checkpoint.", "train.max_epochs_this_run", "train.eval_batch_size",
                      "train.num_devices", "model.memory_format")


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def save_checkpoint(ckpt: Checkpointer, state: dict, history: list[dict], cfg: Config) -> None:
    """The whole train state (sharded arrays as they are, the optimizer state with its
    structure), the metrics so far and the config, saved in the background as step ``len(history)``."""
    ckpt.save(len(history), state, {"history": history, "config": to_dict(cfg)})


def restore_checkpoint(ckpt: Checkpointer, template: dict, cfg: Config) -> tuple[dict, list[dict]]:
    """The latest checkpoint onto ``template``'s shardings, and its metrics history; exits when
    ``cfg`` trains something other than what the checkpoint was trained with."""
    saved = ckpt.read_meta().get("config")
    if saved is not None:
        before, now = _flat(saved), _flat(to_dict(cfg))
        changed = [f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(before) | set(now))
                   if before.get(k) != now.get(k) and not k.startswith(_RESUMABLE_CHANGES)]
        if changed:
            raise SystemExit(f"error: the checkpoint in {ckpt.directory} was trained with another config ("
                             + "; ".join(changed) + ")\nuse a fresh output.dir, output.resume=false, "
                             "or the checkpoint's settings")
    try:
        state, meta = ckpt.restore(template)
    except CheckpointMismatchError as e:
        raise SystemExit(f"error: {e}\nuse a fresh output.dir or output.resume=false") from None
    return state, meta["history"]


def export_model(path: pathlib.Path, state: dict) -> None:
    """The model as a torch-keyed ``.safetensors`` state_dict (``jaxlayers.interop``):
    loads into the torch twin with ``safetensors.torch.load_file`` + ``load_state_dict``."""
    from jaxlayers import interop

    interop.save_variables(path, {"params": state["params"], "batch_stats": state["batch_stats"]})


# ------------------------------------------------------------------ outputs


def _yaml_dump(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def _write_metrics(out_dir: pathlib.Path, history: list[dict]) -> None:
    """``metrics.jsonl`` of ``history``; none (a previous run's is removed) while it is empty."""
    if history:
        write_jsonl(out_dir / "metrics.jsonl", history)
    else:
        (out_dir / "metrics.jsonl").unlink(missing_ok=True)


def progress_bar(total: int, desc: str):
    """A tqdm bar over one epoch's ``total`` steps, cleared when closed."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def advance(bar, sums: dict, steps: int) -> None:
    """One step on ``bar`` (if any), showing the running means of ``sums`` over ``steps`` steps."""
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{sums['loss'] / steps:.4f}", acc=f"{sums['accuracy'] / steps:.3f}")


def plot_history(history: list[dict], path: pathlib.Path) -> None:
    plot_curves(history, "epoch", {"loss": ["train_loss", "test_loss"],
                                   "accuracy": ["train_accuracy", "test_accuracy"]}, path, "digits CNN")


def plot_feature_maps(params: dict, images: np.ndarray, path: pathlib.Path, max_channels: int = 16) -> None:
    """Responses of the first conv layer (``F.conv2d`` with its weight) to a few test images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxlayers import functional as F

    first = params[next(k for k in params if k.startswith("conv"))]
    maps = np.asarray(F.conv2d(images, first["weight"], first.get("bias"), padding=1))
    n_img, n_ch = len(images), min(maps.shape[1], max_channels)
    fig, axes = plt.subplots(n_img, n_ch + 1, figsize=(1.2 * (n_ch + 1), 1.3 * n_img), squeeze=False)
    for i in range(n_img):
        axes[i, 0].imshow(images[i, 0], cmap="gray")
        axes[i, 0].set_title("input" if i == 0 else "", fontsize=7)
        for c in range(n_ch):
            axes[i, c + 1].imshow(maps[i, c], cmap="viridis")
            if i == 0:
                axes[i, c + 1].set_title(f"ch {c}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle("first-layer feature maps")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "digits_cnn.yaml"))
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optim.lr=0.01 train.epochs=5")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(Config, args.config, args.overrides)
        if cfg.model.frontend == "nnx":
            from nnx_train import main_nnx

            return main_nnx(cfg)
        trainer = Trainer(cfg)
    except ConfigError as e:
        print(f"error: bad config: {e}", file=sys.stderr)
        return 2
    import jax

    out_dir = pathlib.Path(cfg.output.dir)
    print(f"digits CNN: {len(trainer.x_train)} train / {len(trainer.x_test)} test images, "
          f"{len(trainer.mesh.devices.flat)} {jax.devices()[0].platform} device(s), output in {out_dir}")
    t0 = time.perf_counter()
    try:
        state, history, ran = trainer.fit(out_dir)
    except KeyboardInterrupt:
        return 130
    if history and cfg.output.plots:
        plot_history(history, out_dir / "training_curves.png")
        plot_feature_maps(jax.device_get(state["params"]), trainer.x_test[:4], out_dir / "feature_maps.png")
    print(summary(cfg, history, ran, time.perf_counter() - t0))
    print("wrote " + ", ".join(written_files(cfg, out_dir, history, ran)))
    return 0


def summary(cfg: Config, history: list[dict], ran: int, seconds: float) -> str:
    """The closing line: what this run did (``ran`` epochs) and where the model stands."""
    if not history:
        return "nothing trained: train.max_epochs_this_run=0 and no checkpoint to resume from"
    final = history[-1]
    where = f"test accuracy {final['test_accuracy']:.4f} (loss {final['test_loss']:.4f}) after {final['epoch']} epochs"
    if ran:
        return f"done in {seconds:.1f} s: {where}"
    if len(history) >= cfg.train.epochs:
        return f"nothing to do: the checkpoint already covers every epoch ({where})"
    return f"no epoch run (train.max_epochs_this_run=0): the checkpoint holds {where}"


def written_files(cfg: Config, out_dir: pathlib.Path, history: list[dict], ran: int) -> list[str]:
    """The files ``fit`` and ``main`` wrote under ``out_dir`` (the outputs of a trained model only
    once some epoch is trained, now or restored; checkpoints only by epochs run now)."""
    files = [out_dir / "config.yaml"]
    if history:
        files.append(out_dir / "metrics.jsonl")
        if cfg.output.plots:
            files += [out_dir / "training_curves.png", out_dir / "feature_maps.png"]
        files.append(out_dir / MODEL_FILE)
    names = [str(f) for f in files]
    if cfg.output.checkpoint and ran:
        names.append(f"{out_dir / CHECKPOINT}/")
    return names


if __name__ == "__main__":
    sys.exit(main())
