"""Training checkpoints through Orbax (``orbax-checkpoint``).

A :class:`Checkpointer` keeps one directory of step-numbered checkpoints, each
the whole train state (any pytree of JAX arrays: parameters, batch statistics,
the optimizer state with its own structure, the step) plus a JSON-able
``meta`` dict (e.g. the metrics history):

* sharded arrays are written by the devices that hold them, never gathered on
  one host, and restored straight onto the template's shardings;
* saves are asynchronous: ``save`` returns once the arrays are copied off the
  devices and the files are written in the background; :meth:`wait` (called by
  :meth:`restore` and :meth:`close`) blocks until they are on disk;
* only the last ``keep`` checkpoints are kept;
* a checkpoint becomes visible only once completely written (Orbax writes to a
  temporary directory and renames it), so an interrupted run keeps the last one.

>>> import jax.numpy as jnp, tempfile
>>> with Checkpointer(tempfile.mkdtemp(), keep=2) as ckpt:
...     for step in (1, 2, 3):
...         ckpt.save(step, {"w": jnp.full((2,), float(step))}, {"epoch": step})
...     state, meta = ckpt.restore({"w": jnp.zeros((2,))})
>>> ckpt.all_steps(), meta, state["w"].tolist()
([2, 3], {'epoch': 3}, [3.0, 3.0])
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Optional

from .config import ConfigError

__all__ = ["CheckpointConfig", "Checkpointer", "CheckpointMismatchError"]


@dataclasses.dataclass
class CheckpointConfig:
    keep: int = 3  # keep the last N checkpoints (older ones are deleted)

    def validate(self) -> None:
        if self.keep < 1:
            raise ConfigError(f"checkpoint.keep must be >= 1, got {self.keep}")


class CheckpointMismatchError(ValueError):
    """The checkpoint's state does not fit the template (another model or optimizer)."""


class Checkpointer:
    """Step-numbered Orbax checkpoints of a train state and its metadata under ``directory``.

    Args:
      directory: created if missing.
      keep: how many of the latest checkpoints to keep.
      async_save: write in the background (``save`` returns after the copy off the devices).
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 3, async_save: bool = True):
        import orbax.checkpoint as ocp

        self.directory = pathlib.Path(directory).resolve()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def latest_step(self) -> Optional[int]:
        """The newest complete checkpoint's step, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Start saving ``state`` (a pytree of arrays) and ``meta`` (JSON-able) as ``step``."""
        import orbax.checkpoint as ocp

        self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                         meta=ocp.args.JsonSave(meta)))

    def restore(self, template: Any, step: Optional[int] = None) -> tuple[Any, dict]:
        """``(state, meta)`` of ``step`` (default: the latest), with ``template``'s structure,
        shapes, dtypes and shardings (``template`` may be abstract: ``jax.ShapeDtypeStruct``)."""
        import jax
        import orbax.checkpoint as ocp

        self.wait()
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
        try:
            out = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                      meta=ocp.args.JsonRestore()))
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointMismatchError(
                f"checkpoint {self.directory / str(step)} does not fit this model/optimizer: {e}") from e
        return out.state, out.meta

    def delete_all(self) -> None:
        """Delete every checkpoint (a fresh start in the same directory)."""
        self.wait()
        for step in self.all_steps():
            self._manager.delete(step)

    def read_meta(self, step: Optional[int] = None) -> dict:
        """Only the ``meta`` dict of ``step`` (default: the latest)."""
        import orbax.checkpoint as ocp

        self.wait()
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        return self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

    def wait(self) -> None:
        """Block until every save started so far is on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Wait for the saves in flight, then release the manager's threads."""
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
