"""Whole models: training steps and eval forwards, jaxlayers vs idiomatic flax.linen vs torch eager.

Models (``benchmarks/models.py``; the same architecture three ways):

* ResNet-18, CIFAR stem, 3x32x32, 10 classes, batch 32 (``--quick``: 8) —
  train step with SGD-momentum, BatchNorm in training mode (running stats updated);
* Transformer LM, 4 pre-norm layers, d_model 256, 4 heads, FF 1024, causal,
  vocab 1000, sequence 128, batch 16 (quick: 4) — train step with Adam;
* LSTM LM, 2 layers, hidden 512, embedding 128, vocab 1000, sequence 64,
  batch 16 (quick: 4, sequence 32) — train step with Adam;
* ResNet-18, ResNet-50 and MobileNetV2 (torchvision's, without dropout) eval
  forward at 3x224x224 (ImageNet stem, 1000 classes), batch 4 (quick: 1).
  (A MobileNetV2 training step is not a row: torch took 7.4 s per step at
  64x64, batch 16, its depthwise backward being pathological on CPU, and both
  JAX programs 17-24 s to compile; docs/benchmarks.md.)

A train step is forward, cross-entropy loss, backward and the optimizer update:
one ``jax.jit`` program for jaxlayers and flax (optax), eager torch with the
``torch.optim`` equivalent (2 threads, float32).  The contenders take turns
(``harness.time_interleaved``); the table gives medians, jl/flax and jl/torch
ratios, and trace + lower + compile seconds of each JAX program: the median of
``COMPILE_ROUNDS`` compiles of a fresh function, the contenders taking turns (the
first compile in a process also pays one-time start-up costs, which would fall on
whichever contender went first).  The CNN rows
run jaxlayers twice, in torch's layout and in channels-last mode
(``config.memory_format("channels_last")``, NHWC input, the same parameters),
each a row beside the same flax and torch timings.  The note gives each compiled
program's **relayouts** (:func:`count_relayouts`): transposes and copies that
change the physical order of the elements.  Most ``transpose`` instructions in
an optimised XLA:CPU module are layout bitcasts that move nothing, so their
count says little.
"""

from __future__ import annotations

import re
import time
from typing import Any, Callable

import numpy as np

from harness import Table, time_interleaved

TORCH_THREADS = 2
COMPILE_ROUNDS = 3


_HLO_DEF = re.compile(r"^\s*(?:ROOT )?%(\S+) = \w+\[([0-9,]*)\](?:\{([0-9,]*)[^}]*\})? ([\w-]+)\((.*)$")


def count_relayouts(hlo_text: str) -> int:
    """``transpose`` and ``copy`` instructions of an optimised HLO module's text that
    change the physical order of the elements (inside fusions too).

    An instruction's layout ``{m0,m1,...}`` lists its dims minor to major; a transpose
    whose output dims, mapped through its permutation, list the operand's dims in
    the operand's order (ignoring dims of size 1) is a bitcast and is not counted.
    """
    defs: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    moves = []
    for line in hlo_text.splitlines():
        m = _HLO_DEF.match(line)
        if not m:
            continue
        name, dims, layout, op, rest = m.groups()
        shape = tuple(int(d) for d in dims.split(",")) if dims else ()
        order = tuple(int(d) for d in layout.split(",")) if layout else tuple(reversed(range(len(shape))))
        defs[name] = (shape, order)
        if op in ("transpose", "copy"):
            operand = re.match(r"%([^\s,)]+)", rest)
            perm = re.search(r"dimensions=\{([0-9,]*)\}", rest) if op == "transpose" else None
            if operand:
                perm_dims = tuple(int(d) for d in perm.group(1).split(",")) if perm else tuple(range(len(shape)))
                moves.append((shape, order, operand.group(1), perm_dims))
    count = 0
    for shape, order, operand, perm in moves:
        if operand not in defs:
            continue
        in_shape, in_order = defs[operand]
        mapped = [perm[d] for d in order if shape[d] != 1]
        if mapped != [d for d in in_order if in_shape[d] != 1]:
            count += 1
    return count


def _compile(fn: Callable, *args: Any) -> tuple[Any, float, int]:
    """``jax.jit(fn)`` compiled for ``args``: (executable, trace+lower+compile seconds, relayouts)."""
    import jax

    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    seconds = time.perf_counter() - t0
    return compiled, seconds, count_relayouts(compiled.as_text())


def _jl_variables(torch_model: Any) -> dict:
    """The jaxlayers twin's variables: the torch model's ``state_dict`` (same initial weights)."""
    import jax
    import jax.numpy as jnp

    from jaxlayers import interop

    return jax.tree.map(jnp.asarray, interop.state_dict_to_variables(torch_model.state_dict()))


def _flax_variables(model: Any, x: Any) -> dict:
    import jax

    return jax.jit(lambda k, x: model.init(k, x, train=False))(jax.random.key(0), x)


def _train_step(model: Any, tx: Any) -> Callable:
    """One optimisation step of ``model`` (batch_stats updated if it has any)."""
    import jax
    import optax

    def step(params, stats, opt_state, x, y):
        def loss_fn(p):
            if stats is None:
                logits, new_stats = model.apply({"params": p}, x, train=True), None
            else:
                logits, upd = model.apply({"params": p, "batch_stats": stats}, x, train=True,
                                          mutable=["batch_stats"])
                new_stats = upd["batch_stats"]
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_stats

        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_stats, opt_state, loss

    return step


def _jl_contenders(inputs: dict, channels_last: bool) -> dict:
    """jaxlayers contenders: ``{key: (input, memory_format)}``; with ``channels_last``
    also the channels-last run on the flax (NHWC) input."""
    out = {"jaxlayers": (inputs["jaxlayers"], "contiguous")}
    if channels_last:
        out["jaxlayers channels_last"] = (inputs["flax"], "channels_last")
    return out


def _compile_turns(contenders: dict, rounds: int) -> tuple[dict, dict, dict]:
    """``{key: (memory_format, make_fn, args)}`` compiled ``rounds`` times each, taking turns,
    ``make_fn()`` giving a fresh function every time (no cache hit): (executables, median
    seconds, relayouts), each keyed as ``contenders``."""
    from jaxlayers import config

    exes, seconds, relayouts = {}, {k: [] for k in contenders}, {}
    for _ in range(rounds):
        for k, (fmt, make_fn, args) in contenders.items():
            with config.memory_format(fmt):
                exes[k], s, relayouts[k] = _compile(make_fn(), *args)
            seconds[k].append(s)
    return exes, {k: float(np.median(v)) for k, v in seconds.items()}, relayouts


def _add_rows(table: Table, name: str, t: dict, comp: dict, relayouts: dict, note: str) -> None:
    """One row per jaxlayers contender, each beside the same flax and torch timings."""
    for k in t:
        if not k.startswith("jaxlayers"):
            continue
        label = name if k == "jaxlayers" else f"{name} [channels_last]"
        table.add(label, t[k], t["flax"], t["torch"], comp[k], comp["flax"],
                  f"{note}relayouts jl {relayouts[k]} / flax {relayouts['flax']}")


def _train_row(table: Table, name: str, models: dict, inputs: dict, y: np.ndarray, tx: Any,
               torch_opt: Callable, iters: int, rounds: int, note: str, channels_last: bool = False,
               compile_rounds: int = COMPILE_ROUNDS) -> None:
    import jax.numpy as jnp
    import torch

    yj = jnp.asarray(y)
    jl = _jl_variables(models["torch"])
    contenders = {k: (jl, models["jaxlayers"], x, fmt) for k, (x, fmt) in _jl_contenders(inputs, channels_last).items()}
    contenders["flax"] = (_flax_variables(models["flax"], jnp.asarray(inputs["flax"][:1])), models["flax"],
                          inputs["flax"], "contiguous")
    jobs = {k: (fmt, lambda model=model: _train_step(model, tx),
                (v["params"], v.get("batch_stats"), tx.init(v["params"]), jnp.asarray(x), yj))
            for k, (v, model, x, fmt) in contenders.items()}
    exes, comp, relayouts = _compile_turns(jobs, compile_rounds)
    calls = {k: lambda exe=exe, args=jobs[k][2]: exe(*args) for k, exe in exes.items()}

    tm = models["torch"].float().train()
    opt = torch_opt(tm.parameters())
    xt, yt = torch.from_numpy(inputs["torch"]), torch.from_numpy(y).long()

    def torch_step():
        opt.zero_grad(set_to_none=True)
        logits = tm(xt)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), yt.reshape(-1))
        loss.backward()
        opt.step()
        return loss

    calls["torch"] = torch_step
    t = time_interleaved(calls, iters=iters, rounds=rounds)
    _add_rows(table, name, t, comp, relayouts, f"{note}; ")


def _eval_row(table: Table, name: str, models: dict, x: np.ndarray, iters: int, rounds: int,
              compile_rounds: int = COMPILE_ROUNDS) -> None:
    import jax.numpy as jnp
    import torch

    inputs = {"jaxlayers": jnp.asarray(x), "flax": jnp.asarray(x.transpose(0, 2, 3, 1))}
    jl = _jl_variables(models["torch"])
    contenders = {k: (jl, models["jaxlayers"], xk, fmt) for k, (xk, fmt) in _jl_contenders(inputs, True).items()}
    contenders["flax"] = (_flax_variables(models["flax"], inputs["flax"][:1, :64, :64]), models["flax"],
                          inputs["flax"], "contiguous")
    jobs = {k: (fmt, lambda model=model: lambda v, x: model.apply(v, x, train=False), (v, xk))
            for k, (v, model, xk, fmt) in contenders.items()}
    exes, comp, relayouts = _compile_turns(jobs, compile_rounds)
    calls = {k: lambda exe=exe, args=jobs[k][2]: exe(*args) for k, exe in exes.items()}
    tm = models["torch"].float().eval()
    xt = torch.from_numpy(x)

    def torch_fwd():
        with torch.inference_mode():
            return tm(xt)

    calls["torch"] = torch_fwd
    t = time_interleaved(calls, iters=iters, rounds=rounds)
    _add_rows(table, name, t, comp, relayouts, "")


def run(table: Table, quick: bool = False) -> None:
    import optax
    import torch

    import models as M

    threads = torch.get_num_threads()
    torch.set_num_threads(TORCH_THREADS)
    try:
        _run(table, quick, M, optax, torch)
    finally:
        torch.set_num_threads(threads)


def _run(table: Table, quick: bool, M: Any, optax: Any, torch: Any) -> None:
    rng = np.random.default_rng(0)
    iters, rounds = (4, 2) if quick else (10, 5)
    cr = 1 if quick else COMPILE_ROUNDS
    torch.manual_seed(0)

    # ResNet-18 (CIFAR) train step, SGD with momentum
    batch = 8 if quick else 32
    x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    models = {k: M.resnet(k, 18, num_classes=10) for k in ("jaxlayers", "flax", "torch")}
    _train_row(table, f"models: ResNet-18 train step 32x32 N={batch}", models,
               {"jaxlayers": x, "torch": x, "flax": x.transpose(0, 2, 3, 1)}, y,
               optax.sgd(0.1, momentum=0.9), lambda p: torch.optim.SGD(p, 0.1, momentum=0.9),
               iters, rounds, "SGD-m, BN train", channels_last=True, compile_rounds=cr)

    # Transformer LM train step, Adam
    vocab, seq = 1000, 128
    batch = 4 if quick else 16
    ids = rng.integers(0, vocab, (batch, seq + 1))
    x, y = ids[:, :-1], ids[:, 1:].astype(np.int32)
    kw = dict(vocab_size=vocab, d_model=256, nhead=4, num_layers=4, dim_feedforward=1024, max_len=seq)
    models = {k: M.transformer_lm(k, **kw) for k in ("jaxlayers", "flax", "torch")}
    _train_row(table, f"models: Transformer LM 4x256 train L={seq} N={batch}", models,
               {"jaxlayers": x.astype(np.int32), "flax": x.astype(np.int32), "torch": x}, y,
               optax.adam(1e-3), lambda p: torch.optim.Adam(p, 1e-3), iters, rounds, "Adam, causal, 4 heads",
               compile_rounds=cr)

    # LSTM LM train step, Adam
    seq, batch = (32, 4) if quick else (64, 16)
    ids = rng.integers(0, vocab, (batch, seq + 1))
    x, y = ids[:, :-1], ids[:, 1:].astype(np.int32)
    kw = dict(vocab_size=vocab, embed_dim=128, hidden_size=512, num_layers=2)
    models = {k: M.lstm_lm(k, **kw) for k in ("jaxlayers", "flax", "torch")}
    _train_row(table, f"models: LSTM LM 2x512 train L={seq} N={batch}", models,
               {"jaxlayers": x.astype(np.int32), "flax": x.astype(np.int32), "torch": x}, y,
               optax.adam(1e-3), lambda p: torch.optim.Adam(p, 1e-3), iters, rounds,
               "Adam, flax = nn.RNN(OptimizedLSTMCell)", compile_rounds=cr)

    # ResNet-18 / ResNet-50 / MobileNetV2 eval forward at 224x224
    batch = 1 if quick else 4
    x = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
    for depth in (18, 50):
        models = {k: M.resnet(k, depth, num_classes=1000, small_input=False) for k in ("jaxlayers", "flax", "torch")}
        _eval_row(table, f"models: ResNet-{depth} eval 224x224 N={batch}", models, x, iters, rounds, cr)
    models = {k: M.mobilenet_v2(k) for k in ("jaxlayers", "flax", "torch")}
    _eval_row(table, f"models: MobileNetV2 eval 224x224 N={batch}", models, x, iters, rounds, cr)
