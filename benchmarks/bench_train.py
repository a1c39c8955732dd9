"""Training throughput of the main job's CNN: jaxlayers vs plain flax.linen vs torch eager.

One jit-compiled optimisation step (forward, backward, AdamW, BatchNorm update)
on a digits-sized batch; reported as time per step (the table) and samples/s
(the note).  The flax.linen twin is the same architecture in flax's natural
NHWC layout; torch runs eagerly with the same layers.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))


def _flax_twin(channels, convs_per_stage, dropout, num_classes=10):
    import flax.linen as fnn
    import jax.numpy as jnp

    class FlaxCNN(fnn.Module):
        @fnn.compact
        def __call__(self, x, train: bool):
            x = jnp.transpose(x, (0, 2, 3, 1))  # NCHW batch -> NHWC
            for s, width in enumerate(channels):
                for _ in range(convs_per_stage):
                    x = fnn.Conv(width, (3, 3), padding=1, use_bias=False)(x)
                    x = fnn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)
                    x = fnn.relu(x)
                if s < len(channels) - 1:
                    x = fnn.max_pool(x, (2, 2), (2, 2))
            x = jnp.mean(x, axis=(1, 2))
            x = fnn.Dropout(dropout, deterministic=not train)(x)
            return fnn.Dense(num_classes)(x)

    return FlaxCNN()


def _torch_twin(channels, convs_per_stage, dropout, num_classes=10):
    import torch.nn as tnn

    layers, c = [], 1
    for s, width in enumerate(channels):
        for _ in range(convs_per_stage):
            layers += [tnn.Conv2d(c, width, 3, padding=1, bias=False), tnn.BatchNorm2d(width), tnn.ReLU()]
            c = width
        if s < len(channels) - 1:
            layers.append(tnn.MaxPool2d(2))
    layers += [tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Dropout(dropout), tnn.Linear(c, num_classes)]
    return tnn.Sequential(*layers)


def run(table, quick: bool = False) -> None:
    import jax
    import jax.numpy as jnp
    import optax
    import torch

    from harness import compile_seconds, time_interleaved
    import train_classifier as tc

    cfg = tc.ModelConfig()
    batch = 64
    iters = 10 if quick else 50
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    tx = optax.adamw(1e-3, weight_decay=1e-4)

    def make_step(apply):
        def step(params, stats, opt_state, x, y, key):
            def loss_fn(p):
                logits, stats_new = apply(p, stats, x, key)
                return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), stats_new

            (loss, stats_new), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), stats_new, opt_state, loss

        return jax.jit(step)

    key = jax.random.key(0)
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    jl_model = tc.build_model(cfg)
    v = jl_model.init(key, xj, train=False)

    def jl_apply(p, s, x, k):
        out, upd = jl_model.apply({"params": p, "batch_stats": s}, x, train=True, mutable=["batch_stats"], rngs={"dropout": k})
        return out, upd["batch_stats"]

    fx_model = _flax_twin(cfg.channels, cfg.convs_per_stage, cfg.dropout)
    fv = fx_model.init(key, xj, train=False)

    def fx_apply(p, s, x, k):
        out, upd = fx_model.apply({"params": p, "batch_stats": s}, x, train=True, mutable=["batch_stats"], rngs={"dropout": k})
        return out, upd["batch_stats"]

    calls, compiles = {}, {}
    for name, apply, variables in (("jaxlayers", jl_apply, v), ("flax", fx_apply, fv)):
        step = make_step(apply)
        args = (variables["params"], variables["batch_stats"], tx.init(variables["params"]), xj, yj, key)
        compiles[name] = compile_seconds(step, *args)
        calls[name] = lambda step=step, args=args: step(*args)

    tmodel = _torch_twin(cfg.channels, cfg.convs_per_stage, cfg.dropout).float().train()
    topt = torch.optim.AdamW(tmodel.parameters(), 1e-3, weight_decay=1e-4)
    tx_, ty_ = torch.from_numpy(x), torch.from_numpy(y).long()

    def torch_step():
        topt.zero_grad()
        loss = torch.nn.functional.cross_entropy(tmodel(tx_), ty_)
        loss.backward()
        topt.step()

    calls["torch"] = torch_step
    times = time_interleaved(calls, iters=iters)
    note = "samples/s: " + ", ".join(f"{k} {batch / t:,.0f}" for k, t in times.items())
    table.add(f"train step digits CNN (batch {batch})", times["jaxlayers"], times["flax"], times["torch"],
              compiles["jaxlayers"], compiles["flax"], note)
