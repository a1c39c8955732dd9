"""Port a torch network to jaxlayers: same code shape, state_dict loaded as is.

    python examples/port_from_torch.py [--seed 0]

Needs torch (``pip install torch==2.13.0``).  Builds the same small network
with ``torch.nn`` and with ``jaxlayers.nn``, trains nothing, loads the torch
``state_dict`` into the jaxlayers twin through ``jaxlayers.interop`` (strict:
every key and shape is checked), runs both in evaluation mode and in training
mode, and prints the largest differences.
"""

from __future__ import annotations

import argparse
import sys
from collections import OrderedDict

import numpy as np


def torch_net():
    import torch.nn as tnn

    return tnn.Sequential(OrderedDict(
        conv1=tnn.Conv2d(3, 8, 3, padding=1), bn1=tnn.BatchNorm2d(8), relu1=tnn.ReLU(), pool1=tnn.MaxPool2d(2),
        conv2=tnn.Conv2d(8, 16, 3, padding=1, padding_mode="reflect"), bn2=tnn.BatchNorm2d(16), relu2=tnn.ReLU(),
        gap=tnn.AdaptiveAvgPool2d((2, 2)), flatten=tnn.Flatten(), fc=tnn.Linear(64, 10),
    ))


def jax_net():
    from jaxlayers import nn

    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 8, 3, padding=1), bn1=nn.BatchNorm2d(8), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(8, 16, 3, padding=1, padding_mode="reflect"), bn2=nn.BatchNorm2d(16), relu2=nn.ReLU(),
        gap=nn.AdaptiveAvgPool2d((2, 2)), flatten=nn.Flatten(), fc=nn.Linear(64, 10),
    ))


def compare(seed: int = 0) -> dict[str, float]:
    import jax
    import jax.numpy as jnp
    import torch

    from jaxlayers import interop

    torch.manual_seed(seed)
    tnet = torch_net().float()
    x = np.random.default_rng(seed).standard_normal((4, 3, 16, 16)).astype(np.float32)

    jnet = jax_net()
    template = jnet.init(jax.random.key(0), jnp.asarray(x), train=False)
    variables = interop.load_state_dict(template, tnet.state_dict())  # strict: keys and shapes
    assert interop.variables_to_state_dict(variables).keys() == tnet.state_dict().keys()

    tnet.train()
    y_torch_train = tnet(torch.from_numpy(x)).detach().numpy()
    y_train, updates = jnet.apply(variables, jnp.asarray(x), train=True, mutable=["batch_stats"])
    tnet.eval()
    y_torch_eval = tnet(torch.from_numpy(x)).detach().numpy()
    y_eval = jnet.apply({**variables, **updates}, jnp.asarray(x), train=False)
    stats = interop.variables_to_state_dict({**variables, **updates})
    return {
        "train-mode output": float(np.abs(np.asarray(y_train) - y_torch_train).max()),
        "running_mean after one step": float(np.abs(stats["bn1.running_mean"] - tnet.bn1.running_mean.numpy()).max()),
        "eval-mode output": float(np.abs(np.asarray(y_eval) - y_torch_eval).max()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("error: this example needs torch: pip install torch==2.13.0", file=sys.stderr)
        return 2
    print("torch state_dict keys:", ", ".join(torch_net().state_dict().keys()))
    diffs = compare(args.seed)
    for name, d in diffs.items():
        print(f"max |jaxlayers - torch| {name:30s} {d:.2e}")
    ok = all(d < 1e-4 for d in diffs.values())
    print("outputs agree" if ok else "outputs DIFFER")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
