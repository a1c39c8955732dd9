"""Run the benchmarks: ``python benchmarks/run.py [family ...] [--quick]``.

Families are the ``bench_<family>.py`` files beside this one (conv, linear, loss, models,
norm, pool, sparse, recurrent, attention, train, nnx, ...); none named runs all.
Prints one table: medians of jit-compiled forward and forward+backward for
jaxlayers, flax.linen and torch, their ratios, and compile times.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from harness import Table  # noqa: E402


def main() -> None:
    here = pathlib.Path(__file__).resolve().parent
    available = sorted(p.stem[len("bench_"):] for p in here.glob("bench_*.py"))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("families", nargs="*", help=f"any of {available}; default all")
    parser.add_argument("--quick", action="store_true", help="fewer iterations and smaller shapes")
    args = parser.parse_args()
    unknown = set(args.families) - set(available)
    if unknown:
        parser.error(f"unknown benchmark families {sorted(unknown)}; available: {available}")

    import jax
    import torch

    import jaxlayers.config

    torch.set_num_threads(max(1, torch.get_num_threads()))
    from harness import machine

    print(f"# {machine()}; jax {jax.__version__} on {jax.devices()[0].platform}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads); jaxlayers lowering "
          f"{jaxlayers.config.get_lowering()!r}, autotune {'on' if jaxlayers.config.get_autotune() else 'off'}")
    table = Table()
    print(Table.HEADER)
    for fam in args.families or available:
        importlib.import_module(f"bench_{fam}").run(table, quick=args.quick)
    print()
    print(table.render())


if __name__ == "__main__":
    main()
