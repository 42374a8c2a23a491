"""A few-step training run on tiny tiles: the loss goes down, resume and export work end to end."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from training.checkpoints import load_checkpoint
from training.data import REPO_ROOT
from training.export import export_run
from training.train import load_config, main, parse_config, train

from napari_astrodenoise.core.pipeline import denoise
from napari_astrodenoise.core.weights import load_model

TINY_TOML = """
[run]
name = "tiny"
seed = 3
threads = 1
device = "cpu"
epochs = 3
steps_per_epoch = 25
batch_size = 4
lr = 3e-3
warmup_steps = 2
num_workers = 0
val_samples = 8
val_batch_size = 8
preview_samples = 2
log_every = 4

[model]
width = 8
depth = 2

[data]
tile = 32
fits_dir = ""
real_weight = 0.0

[noise]
p_identity = 0.0
p_low_noise = 0.0

[export]
name = "tiny-test"
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The documented command on a tiny config, with --export: (run folder, export folder)."""
    root = tmp_path_factory.mktemp("tiny")
    config = root / "tiny.toml"
    config.write_text(TINY_TOML)
    assert (
        main(
            [
                "--config",
                str(config),
                "--out",
                str(root / "run"),
                "--no-progress",
                "--export",
                str(root / "export"),
            ]
        )
        == 0
    )
    return root / "run", root / "export"


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_the_loss_goes_down(tiny_run):
    run_dir, _ = tiny_run
    metrics = _metrics(run_dir)
    assert [m["epoch"] for m in metrics] == [0, 1, 2, 3]
    assert metrics[-1]["val_total"] < 0.9 * metrics[0]["val_total"]
    assert metrics[-1]["psnr"] > metrics[0]["psnr"] + 0.5
    for key in (
        "train_l1",
        "train_ssim",
        "train_brightness",
        "train_tv",
        "train_mask",
        "val_mask",
        "ssim",
        "lr",
    ):
        assert np.isfinite(metrics[-1][key]), key


def test_the_run_folder_holds_checkpoints_previews_and_logs(tiny_run):
    run_dir, _ = tiny_run
    for name in (
        "config.json",
        "summary.json",
        "steps.jsonl",
        "checkpoint_last.pt",
        "checkpoint_best.pt",
    ):
        assert (run_dir / name).is_file(), name
    assert sorted(p.name for p in (run_dir / "previews").glob("*.png")) == [
        f"epoch_{i:03d}.png" for i in range(4)
    ]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 75 and summary["device"] == "cpu"


def test_the_export_loads_and_denoises_through_the_package(tiny_run):
    _, export_dir = tiny_run
    path = export_dir / "tiny-test.json"
    cfg = json.loads(path.read_text())
    assert cfg["default"] is False
    assert cfg["training"]["steps"] == 75 and cfg["training"]["device"] == "cpu"
    assert {"psnr", "ssim", "val_total"} <= set(cfg["validation"])
    assert (export_dir / "tiny-test.safetensors").stat().st_size < 10 * 2**20
    loaded = load_model(path)
    assert loaded.sha256 == cfg["sha256"] and loaded.config["architecture"]["width"] == 8
    rng = np.random.default_rng(0)
    image = rng.normal(200.0, 10.0, (48, 40)).astype(np.float32)
    out = denoise(image, model=path, tile_size=32, device="cpu")
    assert out.shape == image.shape and np.isfinite(out).all()
    colour = rng.normal(200.0, 10.0, (3, 40, 48)).astype(np.float32)
    assert (
        denoise(colour, model=path, tile_size=32, channel_axis=0, device="cpu").shape
        == colour.shape
    )


def test_resuming_continues_where_an_uninterrupted_run_would_be(tmp_path, tiny_run):
    run_dir, _ = tiny_run
    config = parse_config(json.loads((run_dir / "config.json").read_text()))
    config.run.epochs, config.run.steps_per_epoch = 2, 6
    config.run.validate_first, config.run.preview_samples = False, 0
    first = train(config, tmp_path / "a", progress=False, stop_after=1)
    assert first["epochs"] == 1 and first["steps"] == 6
    with pytest.raises(FileExistsError, match="--resume"):
        train(config, tmp_path / "a", progress=False)
    summary = train(config, tmp_path / "a", resume=True, progress=False)
    assert summary["epochs"] == 2 and summary["steps"] == 12
    straight = train(config, tmp_path / "b", progress=False)
    assert straight["steps"] == 12
    a = load_checkpoint(tmp_path / "a" / "checkpoint_last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoint_last.pt")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_a_checkpoint_from_before_the_noise_channel_resumes(tmp_path, tiny_run):
    run_dir, _ = tiny_run
    config = parse_config(json.loads((run_dir / "config.json").read_text()))
    config.run.epochs, config.run.steps_per_epoch = 2, 2
    config.run.validate_first, config.run.preview_samples = False, 0
    train(config, tmp_path / "old", progress=False, stop_after=1)
    path = tmp_path / "old" / "checkpoint_last.pt"
    ckpt = load_checkpoint(path)
    del ckpt["config"]["model"]["noise_channel"]  # as written before the field existed
    torch.save(ckpt, path)
    assert train(config, tmp_path / "old", resume=True, progress=False)["steps"] == 4


def test_shipping_marks_the_model_default_and_clears_the_others(tmp_path, tiny_run, monkeypatch):
    run_dir, _ = tiny_run
    import training.export as export

    monkeypatch.setattr(export, "MODELS_DIR", tmp_path)
    old = export_run(run_dir, tmp_path, name="older", default=True)
    new = export_run(run_dir, ship=True, name="newer")
    assert new.parent == tmp_path
    assert json.loads(new.read_text())["default"] is True
    assert json.loads(old.read_text())["default"] is False


def test_a_fine_tune_starts_from_the_given_weights_and_records_them(tmp_path, tiny_run):
    run_dir, export_dir = tiny_run
    config = parse_config(json.loads((run_dir / "config.json").read_text()))
    config.run.epochs, config.run.steps_per_epoch, config.run.preview_samples = 1, 2, 0
    config.run.init = str(export_dir / "tiny-test.json")
    train(config, tmp_path / "ft", progress=False)
    first = _metrics(tmp_path / "ft")[0]  # epoch 0: the initial weights, before any step
    assert first["psnr"] == pytest.approx(_metrics(run_dir)[-1]["psnr"], abs=1e-3)
    ft = export_run(tmp_path / "ft", tmp_path / "export", name="tiny-ft", description="ft")
    assert json.loads(ft.read_text())["description"] == "ft"
    init = json.loads(ft.read_text())["training"]["init"]
    assert init["sha256"] == load_model(export_dir / "tiny-test.json").sha256
    assert init["steps"] == 75
    config.run.init = str(run_dir / "checkpoint_last.pt")  # a checkpoint works as well
    train(config, tmp_path / "ft2", progress=False)
    assert _metrics(tmp_path / "ft2")[0]["psnr"] == pytest.approx(first["psnr"], abs=1e-3)


def test_a_fine_tune_of_another_architecture_is_refused(tmp_path, tiny_run):
    run_dir, _ = tiny_run
    config = parse_config(json.loads((run_dir / "config.json").read_text()))
    config.run.init = str(run_dir / "checkpoint_last.pt")
    config.model = dataclasses.replace(config.model, width=16)
    with pytest.raises(ValueError, match="architecture"):
        train(config, tmp_path / "bad", progress=False)


def test_a_model_without_the_noise_channel_starts_one_with_it_as_the_same_function(
    tmp_path, tiny_run
):
    run_dir, export_dir = tiny_run
    raw = json.loads((run_dir / "config.json").read_text())
    raw["model"]["noise_channel"] = True
    with pytest.raises(ValueError, match="must agree"):
        parse_config(raw)
    raw["data"]["noise_map"] = True
    config = parse_config(raw)
    config.run.epochs, config.run.steps_per_epoch, config.run.preview_samples = 1, 3, 0
    config.run.init = str(export_dir / "tiny-test.json")
    train(config, tmp_path / "nm", progress=False)
    metrics = _metrics(tmp_path / "nm")
    # epoch 0 is the source model, which never sees the map (zero weights on it)
    assert metrics[0]["psnr"] == pytest.approx(_metrics(run_dir)[-1]["psnr"], abs=1e-3)
    path = export_run(tmp_path / "nm", tmp_path / "export", name="tiny-nm", description="nm")
    loaded = load_model(path)
    assert loaded.module.config.noise_channel
    assert json.loads(path.read_text())["training"]["init"]["widened"]
    rng = np.random.default_rng(0)
    img = (100.0 + rng.normal(0, 5, (3, 48, 40))).astype(np.float32)
    img[1, 5, 5] = np.nan
    out = denoise(img, model=loaded, channel_axis=0, tile_size=32)
    assert out.shape == img.shape and np.isnan(out[1, 5, 5])
    assert np.isfinite(np.delete(out.ravel(), np.ravel_multi_index((1, 5, 5), img.shape))).all()


CONFIGS = sorted(p.stem for p in (REPO_ROOT / "training" / "configs").glob("*.toml"))


def test_the_configuration_folder_holds_the_documented_configs():
    assert {"quick", "gpu", "finetune", "noisemap", "soft10", "soft10_noisemap"} <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_the_shipped_configurations_parse(name):
    config = load_config(REPO_ROOT / "training" / "configs" / f"{name}.toml")
    assert config.run.name == name
    assert config.data.tile == (256 if name == "gpu" else 128)
