"""The NNX front end (``jaxlayers.nnx``) against the linen one it is built from.

* Training step of the main job's CNN (``bench_train``'s model and AdamW step):
  the NNX step as ``examples/nnx_train.py`` runs it (``nnx.jit`` +
  ``nnx.cached_partial``, ``nnx.Optimizer``, running statistics updated in place)
  and plain ``nnx.jit`` without ``cached_partial``, against the linen step under
  ``jax.jit``.  Column "jaxlayers" is the NNX time, "flax" the linen time, so
  ``jl/flax`` is NNX / linen (target <= 1.05).
* Training step of ResNet-18 (``models.resnet``: CIFAR stem, 3x32x32, 10
  classes, batch 32, SGD with momentum 0.9, BatchNorm in training mode): the NNX
  twin (``models.NNXResNet``, ``jaxlayers.nnx`` layers) stepped as
  ``examples/nnx_train.py`` does (``nnx.jit`` + ``nnx.cached_partial``,
  ``nnx.Optimizer``) against the linen jaxlayers ResNet-18 under ``jax.jit`` with
  optax, both from the same torch initial weights.  "jaxlayers" = NNX, "flax" =
  linen, ``jl/flax`` = NNX / linen.
* Per-call overhead of one layer: the NNX module called eagerly against
  ``linen.apply`` eagerly (both dispatch op by op), and ``nnx.jit`` of the NNX
  call against ``jax.jit`` of ``linen.apply``.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))


def _linen_step_call(linen, variables, tx, x, y, key=None):
    """A jitted linen + optax training step (cross-entropy, running statistics updated) on fixed
    data, as a no-argument call that carries its state from call to call (``key``: dropout)."""
    import jax
    import optax

    rngs = {} if key is None else {"dropout": key}

    @jax.jit
    def linen_step(params, stats, opt_state, x, y):
        def loss_fn(p):
            logits, upd = linen.apply({"params": p, "batch_stats": stats}, x, train=True, mutable=["batch_stats"],
                                      rngs=rngs)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), upd["batch_stats"]

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state, loss

    state = [variables["params"], variables["batch_stats"], tx.init(variables["params"])]

    def linen_call():
        state[0], state[1], state[2], loss = linen_step(*state, x, y)
        return loss

    return linen_call


def _nnx_step(model, optimizer, x, y):
    """One NNX training step (cross-entropy, ``optimizer`` updates ``model`` in place); returns the loss."""
    import optax
    from flax import nnx as fnnx

    def loss_fn(model):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    loss, grads = fnnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


def _train_rows(table, quick: bool) -> None:
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx as fnnx

    from harness import time_interleaved
    import train_classifier as tc
    from jaxlayers import nnx

    cfg = tc.ModelConfig()
    batch, iters = 64, (10 if quick else 50)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, 1, 8, 8)).astype(np.float32))
    y = jnp.asarray(rng.integers(0, 10, batch).astype(np.int32))
    tx = optax.adamw(1e-3, weight_decay=1e-4)
    key = jax.random.key(0)

    linen = tc.build_model(cfg)
    variables = linen.init(key, x, train=False)

    linen_call = _linen_step_call(linen, variables, tx, x, y, key)

    calls = {"linen": linen_call}
    variants = ("nnx cached_partial", "nnx.jit", "nnx split/merge in jax.jit")
    for name in variants:
        model = nnx.from_linen(linen, variables, rngs=fnnx.Rngs(dropout=0))
        optimizer = fnnx.Optimizer(model, tx, wrt=fnnx.Param)
        if name == "nnx cached_partial":
            bound = fnnx.cached_partial(fnnx.jit(_nnx_step), model, optimizer)
            calls[name] = lambda bound=bound: bound(x, y)
        elif name == "nnx.jit":
            step = fnnx.jit(_nnx_step)
            calls[name] = lambda step=step, model=model, optimizer=optimizer: step(model, optimizer, x, y)
        else:  # flax's functional API: one pytree of arrays in and out, as the linen step
            graphdef, nstate = fnnx.split((model, optimizer))

            @jax.jit
            def pure(nstate, x, y, graphdef=graphdef):
                model, optimizer = fnnx.merge(graphdef, nstate)
                loss = _nnx_step(model, optimizer, x, y)
                return fnnx.state((model, optimizer)), loss

            box = [nstate]

            def pure_call(box=box, pure=pure):
                box[0], loss = pure(box[0], x, y)
                return loss

            calls[name] = pure_call
    times = time_interleaved(calls, iters=iters, best_round=True)
    for name in variants:
        table.add(f"nnx train step digits CNN ({name})", times[name], times["linen"],
                  note=f"NNX / linen; samples/s {batch / times[name]:,.0f} vs {batch / times['linen']:,.0f}")


def resnet18_step_calls(batch: int = 32, width: int = 64, seed: int = 0) -> dict:
    """Zero-argument calls, each running one ResNet-18 SGD-momentum training step and
    returning its loss: ``"nnx"`` (``models.NNXResNet`` under ``nnx.jit`` +
    ``nnx.cached_partial``, ``nnx.Optimizer``; parameters and running statistics
    updated in place) and ``"linen"`` (the jaxlayers linen ResNet-18, one ``jax.jit``
    step with optax; its state fed back).  Both start from the same torch weights, so
    their losses agree step by step (float32 rounding).  ``width`` 64 = the real model."""
    import jax
    import jax.numpy as jnp
    import optax
    import torch
    from flax import nnx as fnnx

    import models as M
    from jaxlayers import interop

    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32))
    y = jnp.asarray(rng.integers(0, 10, batch).astype(np.int32))
    tx = optax.sgd(0.1, momentum=0.9)
    torch.manual_seed(seed)
    state_dict = M.resnet("torch", 18, num_classes=10, width=width).float().state_dict()

    linen = M.resnet("jaxlayers", 18, num_classes=10, width=width)
    variables = jax.tree.map(jnp.asarray, interop.state_dict_to_variables(state_dict))

    linen_call = _linen_step_call(linen, variables, tx, x, y)

    model = M.resnet("nnx", 18, num_classes=10, width=width, rngs=fnnx.Rngs(seed))
    model.load_state_dict(state_dict)
    model.train()  # cached_partial freezes the mode it is given (examples/nnx_train.py)
    optimizer = fnnx.Optimizer(model, tx, wrt=fnnx.Param)

    bound = fnnx.cached_partial(fnnx.jit(_nnx_step), model, optimizer)
    return {"nnx": lambda: bound(x, y), "linen": linen_call}


def _resnet_rows(table, quick: bool) -> None:
    import time

    import jax

    from harness import time_interleaved

    batch = 32
    calls = resnet18_step_calls(batch)
    first = {}
    for name, call in calls.items():  # trace + compile + one step
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        first[name] = time.perf_counter() - t0
    iters, rounds = (6, 3) if quick else (20, 5)
    times = time_interleaved(calls, iters=iters, rounds=rounds, best_round=True)
    table.add(f"nnx train step ResNet-18 32x32 N={batch} (cached_partial)", times["nnx"], times["linen"],
              note=f"NNX / linen, SGD-m, BN train; first call s {first['nnx']:.1f} vs {first['linen']:.1f}; "
                   f"samples/s {batch / times['nnx']:,.0f} vs {batch / times['linen']:,.0f}")


def _eager_rows(table, quick: bool) -> None:
    import jax
    import jax.numpy as jnp
    from flax import nnx as fnnx

    from harness import time_interleaved
    from jaxlayers import nn, nnx

    rng = np.random.default_rng(0)
    cases = [
        ("Linear(64, 64)", lambda m: m.Linear(64, 64), (8, 64), {}),
        ("Conv2d(8, 8, 3)", lambda m: m.Conv2d(8, 8, 3, padding=1), (2, 8, 16, 16), {}),
        ("BatchNorm2d(8) train", lambda m: m.BatchNorm2d(8), (2, 8, 16, 16), {"train": True}),
    ]
    for label, make, shape, kw in cases[:2] if quick else cases:
        x = jnp.asarray(rng.standard_normal(shape).astype(np.float32))
        linen = make(nn)
        variables = linen.init(jax.random.key(0), x, **({"train": False} if kw else {}))
        model = nnx.from_linen(linen, variables)
        mutable = ["batch_stats"] if kw else False
        linen_jit = jax.jit(lambda v, x: linen.apply(v, x, mutable=mutable, **kw))
        nnx_jit = fnnx.jit(lambda m, x: m(x))
        times = time_interleaved({
            "nnx eager": lambda: model(x),
            "linen eager": lambda: linen.apply(variables, x, mutable=mutable, **kw),
            "nnx.jit": lambda: nnx_jit(model, x),
            "jax.jit linen": lambda: linen_jit(variables, x),
        }, iters=20 if quick else 100, best_round=True)
        table.add(f"nnx eager call {label}", times["nnx eager"], times["linen eager"],
                  note="NNX module called eagerly / linen.apply eagerly")
        table.add(f"nnx.jit call {label}", times["nnx.jit"], times["jax.jit linen"],
                  note="nnx.jit(model)(x) / jax.jit(linen.apply)(variables, x)")


def run(table, quick: bool = False) -> None:
    _train_rows(table, quick)
    _resnet_rows(table, quick)
    _eager_rows(table, quick)
