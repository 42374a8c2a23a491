"""finetune and iter_finetune: learn from a Noise2Noise pair, stay unbiased, write a model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _synth import SKY, noisy, shifted_pair, star_field
from astropy.io import fits

from napari_astrodenoise.core import weights
from napari_astrodenoise.core.stretch import fit_stretch
from napari_astrodenoise.finetune import FinetuneProgress, finetune, iter_finetune
from napari_astrodenoise.finetune.loop import MonoNet

SEQUENCES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sequences"
CLEAR = (slice(100, 170), slice(10, 80))  # no stars here: bare sky
SKY_PATCH = (slice(112, 158), slice(20, 70))
SHIFT = (3, -4)


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    folder = tmp_path / "user-models"
    monkeypatch.setenv(weights.USER_MODELS_ENV, str(folder))
    return folder


@pytest.fixture(scope="module")
def field():
    return star_field((180, 180), seed=11, n_bright=30, n_faint=25, keep_clear=CLEAR)


@pytest.fixture(scope="module")
def pair(field):
    return shifted_pair(field[0], SHIFT, (160, 160))


def _quick(**kw):
    """Options for a few-step run on tiny frames."""
    return {"minutes": 5.0, "tile_size": 32, "validation_tiles": 8, "validate_every": 5, **kw}


@pytest.fixture(scope="module")
def trained(field, pair, identity_model_path, tmp_path_factory):
    """One real fine-tune of the identity network on the synthetic pair (~250 steps)."""
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("user-models")
    mp.setenv(weights.USER_MODELS_ENV, str(folder))
    try:
        result = finetune(
            list(pair),
            base=identity_model_path,
            name="synthetic",
            max_steps=250,
            tile_size=48,
            learning_rate=2e-3,
            validate_every=25,
            patience=100,
            minutes=10.0,
        )
        yield result, folder
    finally:
        mp.undo()


def _denoise(model, frame: np.ndarray) -> np.ndarray:
    """The network alone on a whole mono frame, as inference feeds it, back in linear units."""
    stretch = fit_stretch(frame, softening=model.softening)
    y = torch.from_numpy(stretch.forward(frame))[None]
    with torch.inference_mode():
        out, _ = MonoNet(model.module)(y)
    return stretch.inverse(out[0].numpy())[0]


@pytest.mark.slow
def test_a_short_finetune_lowers_the_validation_loss(trained):
    result, _ = trained
    assert result.steps == 250 and result.stopped == "steps"
    # identity: about 2 on the sky (input noise + target noise), less on stars; a perfect
    # denoiser about 1 on the sky
    assert result.val_loss_before > 1.5
    assert result.val_loss_after < 0.65 * result.val_loss_before
    assert result.improved


@pytest.mark.slow
def test_the_finetuned_model_is_unbiased_on_flat_sky_and_faint_stars(trained, field):
    result, _ = trained
    clean, faint = field
    oy, ox = max(SHIFT[0], 0), max(SHIFT[1], 0)
    view = clean[oy : oy + 160, ox : ox + 160]
    frame = noisy(view, 99)  # a new exposure: never seen in training
    out = _denoise(result.model, frame)
    sigma = np.sqrt(SKY + 25.0)
    sky = (slice(SKY_PATCH[0].start - oy, SKY_PATCH[0].stop - oy), SKY_PATCH[1])
    assert out[sky].std() < 0.1 * sigma  # it does denoise
    # the mean of 2300 pixels: its own noise is 0.02 sigma
    assert out[sky].mean() == pytest.approx(float(view[sky].mean()), abs=0.1 * sigma)
    yy, xx = np.mgrid[0:160, 0:160]
    true_flux = out_flux = 0.0
    for y, x, _f in faint:
        aperture = (yy - (y - oy)) ** 2 + (xx - (x - ox)) ** 2 <= 16
        true_flux += float((view[aperture] - SKY).sum())
        out_flux += float((out[aperture] - SKY).sum())
    # 21 stars with 6-sigma peaks: the aperture sums' own noise is ~1.5 % (+1.6 % measured); a
    # 250-step network's flux at such stars moves by a few % with its training
    assert out_flux == pytest.approx(true_flux, rel=0.05)


@pytest.mark.slow
def test_the_model_is_saved_with_complete_provenance_and_loads_by_name(trained):
    result, folder = trained
    assert result.path == folder / "synthetic.json"
    assert sorted(p.name for p in folder.iterdir()) == ["synthetic.json", "synthetic.safetensors"]
    cfg = json.loads(result.path.read_text())
    assert cfg["name"] == "synthetic" and cfg["default"] is False and cfg["origin"] == "user"
    ft = cfg["finetune"]
    base_cfg = json.loads(Path(str(result.model.path)).with_suffix(".json").read_text())
    assert base_cfg["sha256"] == result.model.sha256
    assert ft["base"]["name"] == "identity-test" and len(ft["base"]["sha256"]) == 64
    assert ft["inputs"] == [
        {"name": "array 0", "shape": [160, 160]},
        {"name": "array 1", "shape": [160, 160]},
    ]
    assert ft["mode"] == "all"
    assert ft["pairs"] == [["array 0", "array 1"]]
    assert ft["registration"]["shifts_dy_dx"] == [[0, 0], list(SHIFT)]
    assert ft["regions"]["crop_boxes_y0_y1_x0_x1"] == [[0, 157, 4, 160], [3, 160, 0, 156]]
    assert ft["regions"]["validation_rows"][1] == 157
    assert ft["levels"][1]["gain"] == pytest.approx(1.0, abs=0.03)
    assert ft["steps"] == 250 and ft["device"] == "cpu" and ft["wall_time_s"] > 0
    assert ft["validation"]["loss_before"] > ft["validation"]["loss_after"]
    check = ft["flux_lock_check"]  # the lock measured on frame 1 (finetune.lockcheck)
    assert check["tested_px"] == 8.0 and check["flux_lock"] in (0.0, 8.0)
    assert check["held_out_faint_sky"]["pixels"] > 0
    assert check["star_flux_change_without_lock"]["stars"] > 0
    assert cfg["options"] == {"flux_lock": check["flux_lock"]}  # what the engine runs with
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(weights.USER_MODELS_ENV, str(folder))
        loaded = weights.load_model("synthetic")
        assert loaded.sha256 == result.model.sha256
        assert {e.name: e.origin for e in weights.available_models()}["synthetic"] == "user"


def test_fits_inputs_are_recorded_by_name_and_hash(
    tmp_path, pair, identity_model_path, models_dir
):
    paths = []
    for k, frame in enumerate(pair):
        hdu = fits.PrimaryHDU(frame)
        hdu.header.update(INSTRUME="cam", EXPTIME=30.0)
        paths.append(tmp_path / f"sub{k}.fits")
        hdu.writeto(paths[-1])
    result = finetune(paths, base=identity_model_path, name="from-files", **_quick(max_steps=2))
    inputs = result.provenance["inputs"]
    assert [i["name"] for i in inputs] == ["sub0", "sub1"]
    assert inputs[0]["sha256"] == weights.sha256_file(paths[0])
    assert inputs[0]["instrume"] == "cam" and inputs[0]["exptime"] == 30.0


def test_shipped_names_are_refused_and_an_existing_model_needs_overwrite(
    pair, identity_model_path, models_dir
):
    for name in weights.list_models():
        with pytest.raises(ValueError, match="shipped model"):
            next(iter_finetune(list(pair), base=identity_model_path, name=name))
    first = finetune(list(pair), base=identity_model_path, name="mine", **_quick(max_steps=2))
    with pytest.raises(ValueError, match=r"exists .*overwrite=True"):
        next(iter_finetune(list(pair), base=identity_model_path, name="mine"))
    second = finetune(
        list(pair),
        base=identity_model_path,
        name="mine",
        overwrite=True,
        **_quick(max_steps=4, seed=1),
    )
    assert second.path == first.path
    assert json.loads(second.path.read_text())["finetune"]["steps"] == 4
    assert weights.load_model("mine").sha256 == second.model.sha256 != first.model.sha256


def test_the_same_seed_gives_the_same_model(pair, identity_model_path, models_dir):
    a = finetune(list(pair), base=identity_model_path, name="a", **_quick(max_steps=3, seed=5))
    b = finetune(list(pair), base=identity_model_path, name="b", **_quick(max_steps=3, seed=5))
    c = finetune(list(pair), base=identity_model_path, name="c", **_quick(max_steps=3, seed=6))
    assert a.model.sha256 == b.model.sha256 != c.model.sha256


def test_progress_records_then_the_result(pair, identity_model_path, models_dir):
    gen = iter_finetune(list(pair), base=identity_model_path, name="p", **_quick(max_steps=10))
    records = []
    while True:
        try:
            records.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert all(isinstance(r, FinetuneProgress) for r in records)
    stages = [r.stage for r in records]
    assert stages[:3] == ["read", "register", "prepare"] and stages[-1] == "save"
    assert stages.count("train") + stages.count("validate") == 11  # the base, then 10 steps
    steps = [r for r in records if r.stage in ("train", "validate") and r.step > 0]
    assert [r.step for r in steps] == list(range(1, 11))
    assert all(r.loss > 0 and r.val_loss_before == result.val_loss_before for r in steps)
    assert [r.val_loss is not None for r in steps] == [s % 5 == 0 for s in range(1, 11)]
    fractions = [r.fraction for r in records]
    assert fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] <= 1
    assert steps[-1].fraction == 1.0 and steps[-1].eta_s == 0.0
    assert all(r.message and "\n" not in r.message for r in records)
    assert result.steps == 10 and result.path.is_file()


def test_a_plateau_lowers_the_learning_rate_before_stopping(
    pair, identity_model_path, models_dir, monkeypatch
):
    from napari_astrodenoise.finetune import loop

    seen = []
    monkeypatch.setattr(loop, "validation_loss", lambda *a, **k: 1.0)  # never improves
    real_step = torch.optim.Adam.step

    def step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    result = finetune(
        list(pair), base=identity_model_path, name="flat", **_quick(patience=2, learning_rate=1e-3)
    )
    plateau = 2 * 5  # patience validations, every 5 steps
    assert result.stopped == "early" and result.steps == plateau * (loop.LR_DECAYS + 1)
    rates = [1e-3 * loop.LR_DECAY**k for k in range(loop.LR_DECAYS + 1)]
    assert seen == pytest.approx([r for r in rates for _ in range(plateau)])
    record = json.loads(result.path.read_text())["finetune"]
    assert record["learning_rate_decays"] == loop.LR_DECAYS


def test_the_validated_weights_are_the_moving_average_of_the_trained_ones(
    pair, identity_model_path, models_dir, monkeypatch
):
    from napari_astrodenoise.finetune import loop

    decays = []
    real = loop._average_into

    def spy(torch_, average, module, decay):
        decays.append(decay)
        real(torch_, average, module, decay)

    monkeypatch.setattr(loop, "_average_into", spy)
    result = finetune(
        list(pair), base=identity_model_path, name="avg", **_quick(max_steps=6, learning_rate=1e-3)
    )
    # once per step: close to the training at first, towards EMA_DECAY later
    assert result.steps == 6
    assert decays == pytest.approx([(1 + s) / (10 + s) for s in range(6)])
    record = json.loads(result.path.read_text())["finetune"]
    assert record["weight_average_decay"] == loop.EMA_DECAY


def test_without_the_average_the_trained_weights_are_kept(
    pair, identity_model_path, models_dir, monkeypatch
):
    from napari_astrodenoise.finetune import loop

    monkeypatch.setattr(loop, "EMA_DECAY", 0.0)
    monkeypatch.setattr(loop, "_average_into", lambda *a: pytest.fail("averaged"))
    result = finetune(list(pair), base=identity_model_path, name="raw", **_quick(max_steps=3))
    assert result.steps == 3 and np.isfinite(result.val_loss_after)
    assert json.loads(result.path.read_text())["finetune"]["weight_average_decay"] == 0.0


def test_bf16_training_runs_the_inner_levels_as_inference_does():
    model = weights.load_model("default")
    y = torch.from_numpy(np.random.default_rng(1).normal(0.0, 0.4, (2, 1, 32, 32)))
    y = y.float()
    with torch.inference_mode():
        fp32, _ = MonoNet(model.module)(y)
        bf16, _ = MonoNet(model.module, "bf16")(y)
        x = y.expand(-1, 3, -1, -1).contiguous()
        inner = model.module(x, inner_dtype=torch.bfloat16)[:, :3].mean(dim=1, keepdim=True)
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, inner, rtol=0, atol=0)
    difference = (bf16 - fp32).abs()
    assert 0 < float(difference.max()) < 0.05  # bfloat16 rounding, not another network


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_precision_trained_in_is_recorded(pair, identity_model_path, models_dir, precision):
    result = finetune(
        list(pair),
        base=identity_model_path,
        name=precision,
        precision=precision,
        **_quick(max_steps=2),
    )
    assert json.loads(result.path.read_text())["finetune"]["precision"] == precision
    assert np.isfinite(result.val_loss_after)


def test_auto_precision_is_the_inference_rule(pair, identity_model_path, models_dir):
    from napari_astrodenoise.core.predictor import resolve_precision

    result = finetune(list(pair), base=identity_model_path, name="auto", **_quick(max_steps=1))
    wanted = resolve_precision("auto", result.model.device)
    assert json.loads(result.path.read_text())["finetune"]["precision"] == wanted


def test_closing_the_generator_cancels_and_writes_nothing(pair, identity_model_path, models_dir):
    gen = iter_finetune(list(pair), base=identity_model_path, name="gone", **_quick())
    for record in gen:
        if record.stage == "train" and record.step == 3:
            break
    gen.close()
    assert not models_dir.exists() or not any(models_dir.iterdir())


def test_half_stacks_train_the_even_against_the_odd_frames(field, identity_model_path, models_dir):
    clean = field[0][:160, :160]
    frames = [noisy(clean, seed) for seed in range(4)]
    result = finetune(
        frames, base=identity_model_path, name="halves", pairs="half-stacks", **_quick(max_steps=2)
    )
    pairs = result.provenance["pairs"]
    assert pairs["input_even"] == ["array 0", "array 2"]
    assert pairs["target_odd"] == ["array 1", "array 3"]
    assert result.provenance["mode"] == "half-stacks"
    # half-stacks are not frames a user denoises: no flux-lock check, no options of its own
    assert "flux_lock_check" not in result.provenance
    assert weights.model_options("halves") == {}


def test_a_single_frame_of_white_noise_is_learnt_from_and_smoothed_noise_refused(
    field, identity_model_path, models_dir
):
    frame = noisy(field[0][:160, :160], 3)
    result = finetune(
        [frame], base=identity_model_path, name="one", single=True, **_quick(max_steps=4)
    )
    assert result.provenance["mode"] == "single"
    assert abs(result.provenance["noise_correlation"]) < 0.15
    assert result.steps == 4 and np.isfinite(result.val_loss_after)
    from scipy.ndimage import gaussian_filter

    smooth = gaussian_filter(frame, 1.0)
    with pytest.raises(ValueError, match="spatially correlated noise"):
        finetune([smooth], base=identity_model_path, name="two", single=True, **_quick())
    assert sorted(p.name for p in models_dir.iterdir()) == ["one.json", "one.safetensors"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"minutes": 0}, "minutes must be a positive number"),
        ({"pairs": "some"}, "pairs must be one of"),
        ({"tile_size": 40}, "tile_size must be a multiple of 16"),
        ({"single": True, "pairs": "half-stacks"}, "takes no pairs"),
        ({"max_steps": 0}, "max_steps must be None or an integer >= 1"),
        ({"precision": "fp16"}, "precision must be one of 'auto', 'fp32', 'bf16'"),
        ({"name": "bad name"}, "model name must be"),
        ({"base": "no-such-model"}, "no model named 'no-such-model'"),
    ],
)
def test_bad_options_are_refused_before_any_work(pair, models_dir, kwargs, match):
    kwargs = {"name": "x", **kwargs}
    with pytest.raises((ValueError, LookupError), match=match):
        next(iter_finetune(list(pair), **kwargs))
    assert not models_dir.exists()


def test_unrelated_frames_are_refused_before_training(identity_model_path, models_dir):
    a = noisy(star_field((160, 160), seed=1)[0], 1)
    b = noisy(star_field((160, 160), seed=2)[0], 2)
    gen = iter_finetune([a, b], base=identity_model_path, name="x")
    assert next(gen).stage == "read"
    assert next(gen).stage == "register"
    with pytest.raises(ValueError, match="do not show the same stars"):
        next(gen)


def test_two_real_bayer_frames_fine_tune_the_shipped_model(models_dir):
    folder = SEQUENCES / "als_m27_asi224mc_bayer"
    if not folder.is_dir():
        pytest.skip(f"real sequences not found at {folder} (../shared/data beside the checkout)")
    if weights.default_model_name() is None:
        pytest.skip("no trained default model ships with this installation")
    frames = [folder / "Light_1069.fits", folder / "Light_1114.fits"]
    result = finetune(
        frames, name="m27", max_steps=2, tile_size=64, validation_tiles=4, validate_every=1
    )
    ft = result.provenance
    assert ft["base"]["name"] == weights.default_model_name()
    assert [i["bayer_pattern"] for i in ft["inputs"]] == ["RGGB", "RGGB"]
    assert ft["inputs"][1]["sha256"] == weights.sha256_file(frames[1])
    dy, dx = ft["registration"]["shifts_dy_dx"][1]
    assert dy in (-2, -4) and dx == -10  # documented: (-3, -10) px after 5 minutes
    assert ft["regions"]["units"] == "pixels of the mosaics"
    assert all(v % 2 == 0 for box in ft["regions"]["crop_boxes_y0_y1_x0_x1"] for v in box)
    assert np.isfinite(result.val_loss_before) and result.steps == 2


def test_frames_with_some_nan_train_with_finite_losses(pair, identity_model_path, models_dir):
    a, b = (f.copy() for f in pair)
    a[20:50, 30:90] = np.nan  # a satellite-trail mask, a dead column
    b[:, 70] = np.nan
    result = finetune([a, b], base=identity_model_path, name="nan", **_quick(max_steps=5))
    assert np.isfinite(result.val_loss_before) and np.isfinite(result.val_loss_after)


def test_importing_finetune_loads_no_gui_and_no_torch():
    import subprocess
    import sys

    code = (
        "import sys, napari_astrodenoise.finetune; "
        "print(sorted({m.split('.')[0] for m in sys.modules} "
        "& {'napari', 'qtpy', 'magicgui', 'torch'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_training_keeps_its_steps_memory(
    pair, identity_model_path, models_dir, monkeypatch, context_spy
):
    from napari_astrodenoise.finetune import loop

    monkeypatch.setattr(loop, "batch_memory_kept", context_spy)
    finetune(list(pair), base=identity_model_path, name="m", **_quick(max_steps=1))
    assert context_spy.seen == ["enter", "leave"]
