"""Character-level language model: ``Embedding -> LSTM -> Linear`` from ``jaxlayers.nn``.

    python examples/train_charlm.py --config configs/charlm_lstm.yaml [key=value ...]

Trains on text that ships with Python itself — the documentation topics in
``pydoc_data.topics`` — with random windows of ``seq_len`` characters, reports
train/validation loss (nats per character) as it falls, and samples text from
the trained model.  Writes ``metrics.jsonl``, ``loss.png`` and ``samples.txt``
under ``output_dir``.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

import numpy as np

from jaxlayers_examples.config import ConfigError, load_config
from jaxlayers_examples.metrics import write_jsonl
from jaxlayers_examples.plots import plot_curves


@dataclasses.dataclass
class Config:
    embed_dim: int = 32
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.0  # between LSTM layers (num_layers > 1)
    seq_len: int = 64
    batch_size: int = 32
    steps: int = 400
    lr: float = 3e-3
    max_chars: int = 200_000  # how much of the corpus to use
    eval_every: int = 50
    sample_chars: int = 300
    temperature: float = 0.8
    prompt: str = "The "
    seed: int = 0
    progress: bool = True
    output_dir: str = "outputs/charlm"

    def validate(self) -> None:
        for name in ("embed_dim", "hidden_size", "num_layers", "seq_len", "batch_size", "steps", "eval_every", "max_chars"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be positive, got {self.temperature}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.prompt:
            raise ConfigError("prompt must not be empty")


def load_corpus(max_chars: int) -> str:
    """Python's own help texts (``pydoc_data.topics``), a few hundred kB of English and code."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))[:max_chars]


class Vocab:
    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def unknown(self, text: str) -> list[str]:
        """The characters of ``text`` outside the vocabulary, sorted."""
        return sorted(set(text) - set(self.index))

    def encode(self, text: str) -> np.ndarray:
        """``text`` as ids; every character must be in the vocabulary (:meth:`unknown`)."""
        return np.array([self.index[c] for c in text], np.int32)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def check_prompt(prompt: str, vocab: Vocab) -> None:
    """The sampling prompt is fed to the model, so each of its characters needs an id."""
    unknown = vocab.unknown(prompt)
    if unknown:
        raise ConfigError(f"prompt has characters outside the corpus' vocabulary: {', '.join(map(repr, unknown))} "
                          f"(the vocabulary is the {len(vocab.chars)} characters of the first max_chars of the corpus)")


def build_model(cfg: Config, vocab_size: int):
    import flax.linen as fnn

    from jaxlayers import nn

    class CharLM(fnn.Module):
        """As in torch: embedding, LSTM (batch_first), linear head."""

        def setup(self):
            self.embedding = nn.Embedding(vocab_size, cfg.embed_dim)
            self.lstm = nn.LSTM(cfg.embed_dim, cfg.hidden_size, num_layers=cfg.num_layers, dropout=cfg.dropout,
                                batch_first=True)
            self.head = nn.Linear(cfg.hidden_size, vocab_size)

        def __call__(self, ids, hx=None, *, train: bool):
            out, hx = self.lstm(self.embedding(ids), hx, train=train)
            return self.head(out), hx

    return CharLM()


def train(cfg: Config, log=print) -> dict:
    """Returns ``{"history", "samples", "variables", "vocab"}``."""
    import jax
    import jax.numpy as jnp
    import optax

    from jaxlayers import nn as jnn

    text = load_corpus(cfg.max_chars)
    vocab = Vocab(text)
    check_prompt(cfg.prompt, vocab)
    data = vocab.encode(text)
    split = int(0.9 * len(data))
    train_ids, val_ids = data[:split], data[split:]
    if len(val_ids) <= cfg.seq_len + 1:
        raise ConfigError(f"max_chars={cfg.max_chars} leaves too little text for seq_len={cfg.seq_len}")
    model = build_model(cfg, len(vocab.chars))
    key = jax.random.key(cfg.seed)
    variables = model.init(key, jnp.zeros((1, cfg.seq_len), jnp.int32), train=False)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(cfg.lr))
    params, opt_state = variables["params"], tx.init(variables["params"])

    criterion = jnn.CrossEntropyLoss()

    def loss_fn(params, ids, train, rng):
        logits, _ = model.apply({"params": params}, ids[:, :-1], train=train, rngs={"dropout": rng})
        # torch's layout for sequence losses: classes on dim 1, (N, C, L) against (N, L) targets
        return criterion(jnp.swapaxes(logits, 1, 2), ids[:, 1:])

    @jax.jit
    def train_step(params, opt_state, ids, rng):
        loss, grads = jax.value_and_grad(loss_fn)(params, ids, True, rng)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    eval_loss = jax.jit(lambda p, ids: loss_fn(p, ids, False, key))
    rng = np.random.default_rng(cfg.seed)

    def batch(source):
        starts = rng.integers(0, len(source) - cfg.seq_len - 1, cfg.batch_size)
        return jnp.asarray(np.stack([source[s:s + cfg.seq_len + 1] for s in starts]))

    val_batches = [batch(val_ids) for _ in range(4)]
    history, running = [], []
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, desc="charlm", dynamic_ncols=True, leave=False)
    t0 = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        params, opt_state, loss = train_step(params, opt_state, batch(train_ids), jax.random.fold_in(key, step))
        running.append(float(loss))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(running[-20:]):.3f}")
        if step % cfg.eval_every == 0 or step == cfg.steps:
            val = float(np.mean([eval_loss(params, b) for b in val_batches]))
            history.append({"step": step, "train_loss": float(np.mean(running)), "val_loss": val,
                            "seconds": time.perf_counter() - t0})
            running = []
            log(f"step {step:5d}  train loss {history[-1]['train_loss']:.3f}  val loss {val:.3f} nats/char")
    if bar is not None:
        bar.close()
    variables = {"params": params}
    samples = sample(model, variables, vocab, cfg.prompt, cfg.sample_chars, cfg.temperature, jax.random.key(cfg.seed + 7))
    return {"history": history, "samples": samples, "variables": variables, "vocab": vocab}


def sample(model, variables, vocab: Vocab, prompt: str, n: int, temperature: float, key) -> str:
    """Feed the prompt, then draw ``n`` characters one at a time, carrying the LSTM state."""
    import jax
    import jax.numpy as jnp

    step = jax.jit(lambda ids, hx: model.apply(variables, ids, hx, train=False))
    ids = vocab.encode(prompt)
    logits, hx = step(jnp.asarray(ids[None]), None)
    out = list(ids)
    for i in range(n):
        nxt = jax.random.categorical(jax.random.fold_in(key, i), logits[0, -1] / temperature)
        out.append(int(nxt))
        logits, hx = step(jnp.asarray([[int(nxt)]], jnp.int32), hx)
    return vocab.decode(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "charlm_lstm.yaml"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(Config, args.config, args.overrides)
        result = train(cfg)
    except ConfigError as e:
        print(f"error: bad config: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    out = pathlib.Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "metrics.jsonl", result["history"])
    plot_curves(result["history"], "step", {"loss (nats/char)": ["train_loss", "val_loss"]}, out / "loss.png",
                "character LSTM on pydoc_data.topics")
    (out / "samples.txt").write_text(result["samples"])
    print("\nsample:\n" + result["samples"])
    print(f"\nwrote {out / 'metrics.jsonl'}, {out / 'loss.png'}, {out / 'samples.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
