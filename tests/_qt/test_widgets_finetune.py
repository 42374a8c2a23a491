"""The Fine-tune widget: frames from layers, a live loss plot, Cancel, the model then selected."""

from __future__ import annotations

import pytest


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def widgets(viewer, dock, models_dir, drifting_frames):
    for k, frame in enumerate(drifting_frames()):
        viewer.add_image(frame, name=f"sub{k}")
    denoiser = dock(viewer, "Denoise")
    tuner = dock(viewer, "Fine-tune")
    tuner.layers.value = [viewer.layers["sub0"], viewer.layers["sub1"]]
    tuner.name_edit.value = "my-camera"
    tuner.minutes.value = 0.1
    return denoiser, tuner


def test_finetune_plots_the_loss_saves_the_model_and_selects_it(widgets, models_dir, wait_idle):
    denoiser, tuner = widgets
    tuner.run()
    assert tuner.task.running and not tuner.run_button.enabled
    wait_idle(tuner, timeout=120_000)
    assert (models_dir / "my-camera.json").is_file()
    assert tuner.result.name == "my-camera"
    assert tuner.curves.val and tuner.curves.val[0][0] == 0  # the base model's loss first
    assert tuner.plot.axes.lines  # the plot shows them
    assert denoiser.picker.model.value == "my-camera"  # ready to run
    assert "selected for denoising" in tuner.status.value


def test_cancel_leaves_no_model(widgets, models_dir, qtbot, notifications):
    _denoiser, tuner = widgets
    tuner.minutes.value = 5.0
    tuner.run()
    qtbot.waitUntil(lambda: bool(tuner.curves.train), timeout=60_000)  # training has started
    tuner.task.cancel()
    qtbot.waitUntil(lambda: not tuner.busy, timeout=60_000)
    assert not models_dir.exists() or not any(models_dir.iterdir())
    assert tuner.result is None
    assert any("cancelled" in message for _, message in notifications)


def test_one_frame_without_single_is_refused_before_any_work(widgets, viewer, notifications):
    _denoiser, tuner = widgets
    tuner.layers.value = [viewer.layers["sub0"]]
    tuner.run()
    assert not tuner.task.running
    assert notifications == [("error", "choose two or more frames of one target (or files)")]
