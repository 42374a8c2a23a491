"""A model's own options (a fine-tuned model's flux lock) apply where the caller sets none."""

from __future__ import annotations

import numpy as np
import pytest

from napari_astrodenoise.core import weights
from napari_astrodenoise.core.outofcore import OutOfCoreRun
from napari_astrodenoise.core.pipeline import denoise, iter_denoise
from napari_astrodenoise.core.progress import drain


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:96, :96]
    sky = 300.0 + 4e3 * np.exp(-((yy - 40) ** 2 + (xx - 50) ** 2) / 8.0)
    return (sky + rng.normal(0, 10, sky.shape)).astype(np.float32)


def test_the_model_s_own_flux_lock_is_used_unless_the_caller_sets_one(
    frame, own_lock_model, random_model
):
    opts = {"tile_size": 32}
    own = denoise(frame, model="own-lock", **opts)
    np.testing.assert_array_equal(own, denoise(frame, model=random_model, flux_lock=0, **opts))
    assert not np.array_equal(own, denoise(frame, model=random_model, **opts))
    np.testing.assert_array_equal(
        denoise(frame, model="own-lock", flux_lock=8.0, **opts),
        denoise(frame, model=random_model, **opts),
    )
    result = drain(iter_denoise(frame, model="own-lock", **opts))
    assert result.settings["flux_lock"] == 0.0  # recorded as run
    assert "flux lock 0 px" in " ".join(result.provenance()["history"])


def test_out_of_core_runs_take_the_model_s_own_options(frame, own_lock_model):
    da = pytest.importorskip("dask.array")
    data = da.from_array(frame, chunks=(32, 96))
    assert OutOfCoreRun(data, model="own-lock").options["flux_lock"] == 0.0
    assert OutOfCoreRun(data, model="own-lock", flux_lock=4.0).options["flux_lock"] == 4.0


def test_own_options_are_checked_and_unknown_names_ignored(own_lock_model):
    assert weights.model_options("own-lock") == {"flux_lock": 0.0}
    assert weights.model_options("default") == {}
    assert weights.model_options("no-such-model") == {}
    assert weights.own_options({"options": {"flux_lock": 4, "colour": "red"}}) == {"flux_lock": 4}
    with pytest.raises(ValueError, match="flux_lock"):
        weights.own_options({"options": {"flux_lock": -1}})
