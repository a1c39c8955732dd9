"""The example trainers and their configs, on tiny settings."""

import json
import pathlib
import re
import sys

import jax
import numpy as np
import pytest

from jaxlayers import config
from jaxlayers_examples.checkpoint import Checkpointer, CheckpointMismatchError
from jaxlayers_examples.config import ConfigError, load_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))  # the scripts themselves

import train_classifier as tc  # noqa: E402

TINY = [
    "model.channels=[16, 32]", "model.convs_per_stage=1", "data.subset=480", "train.batch_size=32",
    "train.epochs=2", "train.eval_batch_size=64", "output.progress=false", "output.plots=false",
]


def tiny(tmp_path=None, *extra):
    overrides = list(TINY) + list(extra)
    if tmp_path is not None:
        overrides.append(f"output.dir={tmp_path}")
    return load_config(tc.Config, ROOT / "configs" / "digits_cnn.yaml", overrides)


# ------------------------------------------------------------------ configs


def test_default_config_loads_and_overrides_apply():
    cfg = load_config(tc.Config, ROOT / "configs" / "digits_cnn.yaml", ["optim.lr=0.01", "model.channels=[4, 8, 16]",
                                                                         "train.num_devices=2"])
    assert cfg.optim.lr == 0.01 and cfg.model.channels == [4, 8, 16] and cfg.train.num_devices == 2
    assert cfg.train.epochs == 12 and cfg.data.dataset == "digits"
    assert isinstance(cfg.optim.lr, float)


@pytest.mark.parametrize(
    "override,match",
    [
        ("optim.lrr=0.1", r"unknown key optim\.lrr; known keys of optim: name, lr"),
        ("bogus=1", r"unknown key bogus"),
        ("train.epochs=two", r"train\.epochs: expected an integer, got 'two'"),
        ("train.epochs=2.5", r"train\.epochs: expected an integer"),
        ("output.plots=maybe", r"output\.plots: expected true or false"),
        ("model.channels=8", r"model\.channels: expected a list"),
        ("model.dropout=1.5", r"model\.dropout must be in \[0, 1\)"),
        ("optim.name=adam", r"optim\.name must be 'adamw' or 'sgd'"),
        ("train.epochs", r"must look like key=value"),
        ("data.dataset=mnist", r"only 'digits'"),
        ("checkpoint.keep=0", r"checkpoint\.keep must be >= 1"),
        ("train.num_devices=0", r"train\.num_devices must be >= 1 \(or null"),
        ("train.num_devices=-2", r"train\.num_devices must be >= 1"),
        ("train.num_devices=true", r"train\.num_devices: expected int or null, got True"),
        ("train.max_epochs_this_run=-1", r"train\.max_epochs_this_run must be >= 0"),
        ("data.subset=0", r"data\.subset must be >= 1"),
        ("data.subset=1", r"data\.subset=1 leaves no training sample"),
        ("optim.warmup_epochs=-1", r"optim\.warmup_epochs must be >= 0"),
        ("optim.lr=1e-3x", r"optim\.lr: expected a number, got '1e-3x'"),
        ("optim.lr=nan", r"optim\.lr: expected a number, got nan"),
        ("optim.lr=true", r"optim\.lr: expected a number, got True"),
        ("optim.lr=inf", r"optim\.lr must be positive and finite, got inf"),
        ("optim.weight_decay=-5", r"optim\.weight_decay must be >= 0 and finite"),
        ("train.epochs=1e3", r"train\.epochs: expected an integer, got '1e3'"),
        ("output.dir=[a]", r"output\.dir: expected a string"),
    ],
)
def test_config_errors_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(tc.Config, ROOT / "configs" / "digits_cnn.yaml", [override])


def test_data_errors_found_when_loading_name_the_key():
    """Checked where the data are loaded, before any JAX work: a stratified split needs every class on
    both sides (sklearn's traceback otherwise); a batch larger than the training set (the NNX trainer
    divided by zero steps per epoch)."""
    import nnx_train

    with pytest.raises(ConfigError, match=r"data\.test_fraction=0\.001: The test_size = 2 should be greater"):
        tc.Trainer(tiny(None, "data.subset=null", "data.test_fraction=0.001"))
    with pytest.raises(ConfigError, match=r"train\.batch_size=64 exceeds the 22 training samples"):
        nnx_train.train_nnx(load_config(tc.Config, ROOT / "configs" / "digits_cnn_nnx.yaml", ["data.subset=30"]))


def test_numbers_in_e_notation_and_strings_as_written(tmp_path):
    """YAML 1.1 (PyYAML) reads 1e-3 as a string, 2024-06-01 as a date and off/yes as bools: a number
    field takes what float() reads, a string field the override's text as written."""
    cfg = load_config(tc.Config, ROOT / "configs" / "digits_cnn.yaml",
                      ["optim.lr=1e-3", "train.label_smoothing=5E-2", "output.dir=2024-06-01", "train.seed='7'"])
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float) and cfg.train.label_smoothing == 0.05
    assert cfg.output.dir == "2024-06-01" and cfg.train.seed == 7
    for text in ("off", "yes", "null", "12", "1e-3"):
        assert load_config(tc.Config, None, [f"output.dir={text}"]).output.dir == text
    assert load_config(tc.Config, None, ["output.plots=off"]).output.plots is False  # bools stay YAML's
    f = tmp_path / "c.yaml"
    f.write_text("optim:\n  lr: 1e-3\n  weight_decay: 5.0e-4\noutput:\n  dir: 2024-06-01\n")
    cfg = load_config(tc.Config, f)
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.output.dir) == (1e-3, 5e-4, "2024-06-01")
    f.write_text("output:\n  dir: off\n")  # in a file the text is gone: quote it
    with pytest.raises(ConfigError, match=r"output\.dir: expected a string, got False"):
        load_config(tc.Config, f)
    with pytest.raises(ConfigError, match=r"optim\.name must be 'adamw' or 'sgd', got 'yes'"):
        load_config(tc.Config, None, ["optim.name=yes"])


def test_nnx_frontend_rejects_features_it_lacks(tmp_path, capsys):
    """The NNX front end has no checkpoints, resume, plots or multi-device sharding: asking for them
    is a config error (exit code 2), not silently ignored; its config says so and runs (with the
    progress bar, which it honours)."""
    nnx_yaml = ROOT / "configs" / "digits_cnn_nnx.yaml"
    assert tc.main(["--config", str(nnx_yaml), "model.channels=[4]", "model.convs_per_stage=1", "data.subset=256",
                    "train.batch_size=32", "train.epochs=1", "train.eval_batch_size=64", f"output.dir={tmp_path}"]) == 0
    captured = capsys.readouterr()
    assert "after 1 epochs" in captured.out and "epoch 1/1" in captured.err  # the bar
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "metrics.jsonl", "model.safetensors"]
    for override, want in [("train.num_devices=2", "train.num_devices=2"),
                           ("train.num_devices=null", "train.num_devices=null"),
                           ("train.max_epochs_this_run=1", "train.max_epochs_this_run=1"),
                           ("output.checkpoint=true", "output.checkpoint=true (it writes no checkpoints)"),
                           ("output.resume=true", "output.resume=true (it cannot resume a run)"),
                           ("output.plots=true", "output.plots=true (it draws no plots)"),
                           ("checkpoint.keep=1", "checkpoint.keep=1")]:
        with pytest.raises(ConfigError, match=re.escape(f"model.frontend=nnx does not support {want}")):
            load_config(tc.Config, nnx_yaml, [override])
    assert tc.main(["--config", str(ROOT / "configs" / "digits_cnn.yaml"), "model.frontend=nnx"]) == 2
    err = capsys.readouterr().err
    assert "bad config: model.frontend=nnx does not support train.num_devices=null" in err
    assert "output.checkpoint=true" in err and "output.plots=true" in err and "output.progress" not in err


def test_missing_and_malformed_config_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tc.Config, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tc.Config, bad)


def test_every_config_file_loads():
    import train_charlm

    assert load_config(tc.Config, ROOT / "configs" / "digits_cnn.yaml")
    assert load_config(train_charlm.Config, ROOT / "configs" / "charlm_lstm.yaml")


def test_trainer_rejects_indivisible_batch():
    with pytest.raises(ConfigError, match=r"train\.batch_size=30 must be divisible by the 4 devices"):
        tc.Trainer(tiny(None, "train.batch_size=30", "train.num_devices=4"))


# ------------------------------------------------------------------ training


FAST = ("optim.warmup_epochs=0", "optim.schedule=constant", "optim.lr=0.01")


@pytest.fixture(scope="module")
def trainer():
    return tc.Trainer(tiny(None, "train.num_devices=1", *FAST))


def test_training_under_jit_lowers_the_loss(trainer):
    state = trainer.init_state()
    before = trainer.evaluate(state)
    state, first = trainer.run_epoch(state, 0)
    state, second = trainer.run_epoch(state, 1)
    after = trainer.evaluate(state)
    assert second["train_loss"] < first["train_loss"] - 0.2
    assert after["test_loss"] < before["test_loss"] - 0.4
    assert after["test_accuracy"] > before["test_accuracy"] + 0.3
    assert int(state["step"]) == 2 * trainer.steps_per_epoch
    # BatchNorm running statistics were updated in training
    bn = jax.device_get(state["batch_stats"]["bn0_0"])
    assert int(bn["num_batches_tracked"]) == 2 * trainer.steps_per_epoch
    assert not np.allclose(bn["running_var"], 1.0)


def test_four_devices_match_one_device_on_the_same_global_batch(trainer):
    assert len(jax.devices()) >= 4, "conftest sets --xla_force_host_platform_device_count=4"
    four = tc.Trainer(tiny(None, "train.num_devices=4", *FAST))
    assert four.batch_sharding.mesh.devices.size == 4
    s1, s4 = trainer.init_state(), four.init_state()
    order = trainer.epoch_order(0)
    # the reference setting: under this suite's fast-compile XLA flags (../conftest.py), XLA:CPU
    # miscompiles the 4-device program of BatchNorm's lowered guarded moments (a lax.cond); with
    # XLA's default flags both settings match one device to ~1e-7 (docs/normalization.md)
    with config.lowering("reference"):
        for i in range(3):
            idx = order[i * 32:(i + 1) * 32]
            s1, m1 = trainer.train_step(s1, jax.device_put(trainer.x_train[idx], trainer.batch_sharding),
                                        jax.device_put(trainer.y_train[idx], trainer.batch_sharding))
            s4, m4 = four.train_step(s4, jax.device_put(four.x_train[idx], four.batch_sharding),
                                     jax.device_put(four.y_train[idx], four.batch_sharding))
            np.testing.assert_allclose(float(m4["loss"]), float(m1["loss"]), rtol=1e-5, err_msg=f"step {i}")
    np.testing.assert_allclose(jax.device_get(s4["batch_stats"]["bn1_0"]["running_mean"]),
                               jax.device_get(s1["batch_stats"]["bn1_0"]["running_mean"]), rtol=1e-4, atol=1e-6)


def test_channels_last_trainer_matches_torch_layout(trainer):
    """model.memory_format: channels_last trains the same network: the same initial parameters, the
    same losses and parameters after two steps (float32), and the same evaluation."""
    cl = tc.Trainer(tiny(None, "train.num_devices=1", "model.memory_format=channels_last", *FAST))
    s1, s2 = trainer.init_state(), cl.init_state()
    chex_close = lambda a, b: jax.tree.map(  # noqa: E731
        lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=2e-4, atol=2e-5), a, b)
    chex_close(s2["params"], s1["params"])
    order = trainer.epoch_order(0)
    x0, y0 = (jax.device_put(a[order[:32]], trainer.batch_sharding) for a in (trainer.x_train, trainer.y_train))
    # the batch argument of the step moved to (N, H, W, C) (transposes of intermediates, e.g. inside a
    # layer or of a nested function's argument, do not count)
    to_nhwc = re.compile(r"transpose %arg\d+, dims = \[0, 2, 3, 1\]")

    def main(lowered):
        return lowered.as_text().split("func.func public @main")[1].split("func.func ")[0]

    assert to_nhwc.search(main(cl.train_step.lower(s2, x0, y0)))
    assert not to_nhwc.search(main(trainer.train_step.lower(s1, x0, y0)))
    for i in range(2):
        idx = order[i * 32:(i + 1) * 32]
        batch = [jax.device_put(a[idx], trainer.batch_sharding) for a in (trainer.x_train, trainer.y_train)]
        s1, m1 = trainer.train_step(s1, *batch)
        s2, m2 = cl.train_step(s2, *batch)
        np.testing.assert_allclose(float(m2["loss"]), float(m1["loss"]), rtol=1e-5, err_msg=f"step {i}")
    chex_close(s2["params"], s1["params"])
    chex_close(s2["batch_stats"], s1["batch_stats"])
    with pytest.raises(ConfigError, match="model.memory_format must be one of"):
        tiny(None, "model.memory_format=NHWC")


@pytest.mark.slow
def test_resume_is_bit_identical(tmp_path):
    full = tmp_path / "full"
    state_full, hist_full, ran = tc.Trainer(tiny(full, "checkpoint.keep=1")).fit(full, log=lambda *a: None)
    assert Checkpointer(full / "checkpoint").all_steps() == [2] and ran == 2  # keep-last-N
    part = tmp_path / "part"
    _, hist_1, ran = tc.Trainer(tiny(part, "train.max_epochs_this_run=1")).fit(part, log=lambda *a: None)
    assert len(hist_1) == 1 and ran == 1
    logs = []
    state_res, hist_res, ran = tc.Trainer(tiny(part)).fit(part, log=logs.append)
    assert any("resumed" in line for line in logs) and ran == 1
    assert Checkpointer(part / "checkpoint").all_steps() == [1, 2]
    assert [r["test_loss"] for r in hist_res] == [r["test_loss"] for r in hist_full]
    a, b = jax.device_get(state_full), jax.device_get(state_res)  # params, batch_stats, optimizer, step
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(x, y)
    lines = (part / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    # resuming with another data split or schedule would train on test samples or jump the learning
    # rate: refused before training, naming what changed; the recorded config is left as it was
    with pytest.raises(SystemExit, match=r"data.split_seed: 0 -> 1; train.epochs: 2 -> 3"):
        tc.Trainer(tiny(part, "data.split_seed=1", "train.epochs=3")).fit(part, log=lambda *a: None)
    assert "split_seed: 0" in (part / "config.yaml").read_text()


@pytest.mark.slow
def test_main_writes_everything_and_bad_config_exits_2(tmp_path, capsys):
    out = tmp_path / "run"
    rc = tc.main(["--config", str(ROOT / "configs" / "digits_cnn.yaml"), *TINY, "output.plots=true",
                  "train.epochs=1", f"output.dir={out}"])
    assert rc == 0
    for name in ("metrics.jsonl", "training_curves.png", "feature_maps.png", "config.yaml", "model.safetensors"):
        assert (out / name).is_file(), name
    assert (out / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Checkpointer(out / "checkpoint").read_meta()["history"][0]["epoch"] == 1
    # the exported model is a torch-keyed state_dict
    from jaxlayers import interop

    keys = interop.load_safetensors(out / "model.safetensors").keys()
    assert {"conv0_0.weight", "bn0_0.running_mean", "bn0_0.num_batches_tracked", "fc.weight", "fc.bias"} <= set(keys)
    assert tc.main(["--config", str(ROOT / "configs" / "digits_cnn.yaml"), "optim.lr=-1"]) == 2
    assert "bad config: optim.lr must be positive" in capsys.readouterr().err


def _fake_epochs(monkeypatch):
    """Epochs that train nothing and evaluate to fixed numbers: fit's bookkeeping, fast."""
    row = {"train_loss": 1.0, "train_accuracy": 0.5, "samples_per_second": 1.0, "epoch_seconds": 0.0}
    monkeypatch.setattr(tc.Trainer, "run_epoch", lambda self, state, epoch, progress=False: (state, dict(row)))
    monkeypatch.setattr(tc.Trainer, "evaluate", lambda self, state: {"test_loss": 1.0, "test_accuracy": 0.5})


def test_main_reports_what_ran_and_lists_only_files_written(tmp_path, monkeypatch, capsys):
    _fake_epochs(monkeypatch)
    out = tmp_path / "run"
    run = ["--config", str(ROOT / "configs" / "digits_cnn.yaml"), *TINY, "train.epochs=1", f"output.dir={out}"]
    # max_epochs_this_run=0 on a fresh dir: no checkpoint to speak of, no untrained model, no empty metrics
    assert tc.main(run + ["train.max_epochs_this_run=0"]) == 0
    printed = capsys.readouterr().out
    assert "nothing trained" in printed and "checkpoint already covers" not in printed
    assert sorted(p.name for p in out.iterdir() if p.name != "checkpoint") == ["config.yaml"]
    assert printed.splitlines()[-1] == f"wrote {out / 'config.yaml'}"
    # one epoch, output.plots=false: the closing line lists no figures
    assert tc.main(run) == 0
    printed = capsys.readouterr().out
    assert "done in" in printed and "after 1 epochs" in printed
    assert printed.splitlines()[-1] == (f"wrote {out / 'config.yaml'}, {out / 'metrics.jsonl'}, "
                                        f"{out / 'model.safetensors'}, {out / 'checkpoint'}/")
    assert not (out / "training_curves.png").exists()
    # rerun of the finished dir: nothing to do
    assert tc.main(run) == 0
    printed = capsys.readouterr().out
    assert "nothing to do: the checkpoint already covers every epoch" in printed and "done in" not in printed
    assert "checkpoint/" not in printed.splitlines()[-1]


# ------------------------------------------------------------- other examples


def test_charlm_loss_falls_and_samples_text():
    import train_charlm

    cfg = load_config(train_charlm.Config, ROOT / "configs" / "charlm_lstm.yaml",
                      ["steps=60", "eval_every=20", "hidden_size=32", "embed_dim=16", "seq_len=24",
                       "batch_size=16", "max_chars=20000", "sample_chars=40", "progress=false"])
    out = train_charlm.train(cfg, log=lambda *a: None)
    losses = [r["val_loss"] for r in out["history"]]
    assert len(losses) == 3
    assert losses[-1] < losses[0] - 0.3
    assert out["samples"].startswith(cfg.prompt) and len(out["samples"]) == len(cfg.prompt) + 40
    assert set(out["samples"]) <= set(out["vocab"].chars)


def test_charlm_rejects_bad_dropout_and_prompts_outside_the_vocabulary(capsys):
    import train_charlm

    charlm_yaml = ROOT / "configs" / "charlm_lstm.yaml"
    for dropout in ("1.5", "1.0", "-0.1"):
        with pytest.raises(ConfigError, match=r"dropout must be in \[0, 1\)"):
            load_config(train_charlm.Config, charlm_yaml, [f"dropout={dropout}"])
    cfg = load_config(train_charlm.Config, charlm_yaml, ["prompt=Th\u2603e \u00a7", "max_chars=2000", "progress=false"])
    with pytest.raises(ConfigError, match="prompt has characters outside the corpus' vocabulary: '\u00a7', '\u2603'"):
        train_charlm.train(cfg, log=lambda *a: None)  # before any training
    assert train_charlm.main(["--config", str(charlm_yaml), "prompt=\u2603", "max_chars=2000"]) == 2
    assert "bad config: prompt has characters outside" in capsys.readouterr().err


def test_filter_image_rejects_a_one_pixel_crop():
    import filter_image

    for crop in ("1", "-4"):
        with pytest.raises(ConfigError, match=r"crop must be 0 \(the whole image\) or >= 2"):
            load_config(filter_image.Config, ROOT / "configs" / "filter_image.yaml", [f"crop={crop}"])
    assert load_config(filter_image.Config, ROOT / "configs" / "filter_image.yaml", ["crop=2"]).crop == 2
    with pytest.raises(ConfigError, match=r"pool=4 is larger than the crop=2"):
        load_config(filter_image.Config, ROOT / "configs" / "filter_image.yaml", ["crop=2", "pool=4"])


def test_filter_image_kernels_match_a_numpy_convolution(tmp_path):
    import filter_image

    cfg_args = ["crop=24", f"output_dir={tmp_path}"]
    assert filter_image.main(["--config", str(ROOT / "configs" / "filter_image.yaml"), *cfg_args]) == 0
    for name in ("original", "sharpen", "sharpen_pooled", "edges_pooled", "filters"):
        assert (tmp_path / f"{name}.png").is_file(), name
    k = filter_image.KERNELS["sharpen"]
    assert np.isclose(k[1, 1], 17 / 9) and np.isclose(k.sum(), 1.0)  # brightness kept (it had summed to 1/9)
    image = filter_image.load_image("china.jpg", crop=12)
    out = filter_image.apply_filters(image, ["sharpen", "edges"], 2)
    # NumPy oracle: cross-correlation with reflect padding, then 2x2 means
    padded = np.pad(image, ((0, 0), (1, 1), (1, 1)), mode="reflect")
    want = sum(k[i, j] * padded[:, i:i + 12, j:j + 12] for i in range(3) for j in range(3))
    np.testing.assert_allclose(out["sharpen"][0], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["sharpen"][1], want.reshape(3, 6, 2, 6, 2).mean((2, 4)), rtol=1e-5, atol=1e-5)
    assert out["edges"][0].min() >= 0
    assert filter_image.main(["--config", str(ROOT / "configs" / "filter_image.yaml"), "filters=[emboss]"]) == 2


def test_port_from_torch_agrees():
    import port_from_torch

    diffs = port_from_torch.compare(seed=1)
    assert set(diffs) == {"train-mode output", "running_mean after one step", "eval-mode output"}
    assert all(d < 1e-4 for d in diffs.values()), diffs


@pytest.mark.slow
def test_ctrl_c_keeps_the_last_checkpoint_and_exits_130(tmp_path, monkeypatch, capsys):
    real = tc.Trainer.run_epoch

    def interrupted_in_epoch_2(self, state, epoch, progress=False):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(self, state, epoch, progress)

    monkeypatch.setattr(tc.Trainer, "run_epoch", interrupted_in_epoch_2)
    out = tmp_path / "run"
    rc = tc.main(["--config", str(ROOT / "configs" / "digits_cnn.yaml"), *TINY, f"output.dir={out}"])
    assert rc == 130
    assert "last checkpoint" in capsys.readouterr().out
    ckpt = Checkpointer(out / "checkpoint")
    assert ckpt.all_steps() == [1]
    assert [r["epoch"] for r in ckpt.read_meta()["history"]] == [1]
    monkeypatch.setattr(tc.Trainer, "run_epoch", real)
    assert tc.main(["--config", str(ROOT / "configs" / "digits_cnn.yaml"), *TINY, f"output.dir={out}"]) == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


# ------------------------------------------------------------- checkpoints


def test_checkpointer_sharded_async_keep_last_n_and_mismatch(tmp_path):
    # a state sharded over 4 devices is saved without gathering and restored onto the
    # template's shardings; the optimizer state keeps its structure; only `keep` remain
    import optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    mesh = Mesh(np.array(jax.devices()[:4]), ("data",))
    sharded, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    params = {"w": jax.device_put(np.arange(8.0, dtype=np.float32), sharded),
              "b": jax.device_put(np.ones(3, np.float32), replicated)}
    tx = optax.adam(0.1)
    state = {"params": params, "opt_state": tx.init(params), "step": jax.numpy.zeros((), jax.numpy.int32)}
    with Checkpointer(tmp_path / "ckpt", keep=2) as ckpt:
        for step in (1, 2, 3):
            state = {**state, "params": jax.tree_util.tree_map(lambda x: x + 1, state["params"])}
            ckpt.save(step, state, {"step": step})
        restored, meta = ckpt.restore(jax.tree_util.tree_map(jax.numpy.zeros_like, state))
        assert ckpt.all_steps() == [2, 3] and meta == {"step": 3}
        assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(state)
        assert restored["params"]["w"].sharding.is_equivalent_to(sharded, 1)
        for x, y in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(restored)):
            np.testing.assert_array_equal(jax.device_get(x), jax.device_get(y))
        with pytest.raises(CheckpointMismatchError, match="does not fit this model/optimizer"):
            ckpt.restore({"params": {"w": np.zeros(5, np.float32)}})
        ckpt.delete_all()  # what output.resume=false does before training afresh
        assert ckpt.all_steps() == [] and ckpt.latest_step() is None
