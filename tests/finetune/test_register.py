"""Registration by whole-pixel shifts: known shifts, Bayer in whole cells, bad pairs refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _synth import noisy, shifted_pair, star_field

from napari_astrodenoise.finetune.frames import SubExposure, split_planes
from napari_astrodenoise.finetune.register import match_levels, register

SEQUENCES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sequences"


def _subs(*frames: np.ndarray, bayer: str | None = None) -> list[SubExposure]:
    return [SubExposure(f, f"f{k}", bayer_pattern=bayer) for k, f in enumerate(frames)]


@pytest.mark.parametrize("shift", [(0, 0), (5, -7), (-12, 3)])
def test_known_whole_pixel_shifts_are_found_and_the_crops_show_the_same_sky(shift):
    clean, _ = star_field((200, 200), seed=3)
    a, b = shifted_pair(clean, shift, (160, 160))
    reg = register(_subs(a, b))
    assert reg.shifts == [(0, 0), shift]
    # the crops line up pixel for pixel: the same clean sky, no resampling
    dy, dx = shift
    oy, ox = max(dy, 0), max(dx, 0)
    clean_a = clean[oy : oy + 160, ox : ox + 160]
    clean_b = clean[oy - dy : oy - dy + 160, ox - dx : ox - dx + 160]
    np.testing.assert_array_equal(reg.crop(0, clean_a), reg.crop(1, clean_b))
    assert reg.crop(0, a).shape == (160 - abs(dy), 160 - abs(dx))
    assert reg.matches[0].matched >= 20


def _mosaic(clean: np.ndarray) -> np.ndarray:
    """A clean field seen through an RGGB filter array (R 0.8, G 1, B 0.6)."""
    factor = np.ones_like(clean)
    factor[0::2, 0::2] = 0.8
    factor[1::2, 1::2] = 0.6
    return clean * factor


@pytest.mark.parametrize("shift", [(4, -6), (-10, 2)])
def test_bayer_shifts_are_whole_cells_and_keep_each_pixel_s_colour(shift):
    clean, _ = star_field((300, 300), seed=5, n_bright=60, fwhm=4.0)
    a, b = shifted_pair(clean, shift, (256, 256))
    a, b = noisy(_mosaic(a), 1), noisy(_mosaic(b), 2)
    reg = register(_subs(a, b, bayer="RGGB"))
    assert reg.cell == 2
    assert reg.shifts == [(0, 0), shift]
    for y0, _, x0, _ in reg.boxes:
        assert y0 % 2 == 0 and x0 % 2 == 0  # every crop starts on a cell: colours kept


def test_an_odd_bayer_drift_is_rounded_to_whole_cells():
    clean, _ = star_field((300, 300), seed=6, n_bright=60, fwhm=4.0)
    a, b = shifted_pair(clean, (3, -5), (256, 256))
    reg = register(_subs(noisy(_mosaic(a), 1), noisy(_mosaic(b), 2), bayer="RGGB"))
    dy, dx = reg.shifts[1]
    assert dy % 2 == 0 and dx % 2 == 0
    assert abs(dy - 3) == 1 and abs(dx + 5) == 1


def test_unrelated_frames_are_refused():
    a = noisy(star_field((160, 160), seed=1)[0], 1)
    b = noisy(star_field((160, 160), seed=2)[0], 2)
    with pytest.raises(ValueError, match="do not show the same stars"):
        register(_subs(a, b))


def test_frames_without_stars_are_refused():
    flat = np.full((160, 160), 100.0, np.float32)
    a, b = noisy(flat, 1), noisy(flat, 2)
    with pytest.raises(ValueError, match=r"frame f0: only \d+ stars found"):
        register(_subs(a, b))


def test_frames_that_barely_overlap_are_refused():
    clean, _ = star_field((160, 260), seed=4, n_bright=120)
    a, b = shifted_pair(clean, (0, 100), (160, 160))
    with pytest.raises(ValueError, match="overlap on only 160x60 px"):
        register(_subs(a, b))


def test_levels_are_matched_for_transparency_and_sky_drift():
    clean, _ = star_field((160, 160), seed=8, n_bright=60)
    a = noisy(clean, 1)
    b = noisy(0.8 * clean + 40.0, 2)  # thinner cloud, brighter sky
    reg = register(_subs(a, b))
    labels = reg.detections[0].labels
    level = match_levels(
        split_planes(a, bayer=False), split_planes(b, bayer=False), labels, cell=1
    )
    assert level.gain == pytest.approx(0.8, rel=0.02)
    assert level.offsets[0] == pytest.approx(40.0, abs=3.0)
    matched = level.apply(split_planes(b, bayer=False))[0]
    assert np.median(matched) == pytest.approx(np.median(a), abs=1.0)


@pytest.fixture(scope="module")
def bayer_sequence():
    folder = SEQUENCES / "als_m27_asi224mc_bayer"
    if not folder.is_dir():
        pytest.skip(f"real sequences not found at {folder} (../shared/data beside the checkout)")
    return folder


def test_the_real_bayer_sequence_drifts_as_documented(bayer_sequence):
    from napari_astrodenoise.finetune.frames import check_frames, load_frames

    names = ["Light_1069", "Light_1114", "Light_1283"]  # 0, 5 and 25 minutes
    subs = load_frames([bayer_sequence / f"{n}.fits" for n in names])
    check_frames(subs)
    assert all(s.bayer_pattern == "RGGB" for s in subs)
    reg = register(subs)
    # documented: (-3, -10) px after 5 min, (+14, -28) after 25 min; whole cells here
    (dy1, dx1), (dy2, dx2) = reg.shifts[1:]
    assert dy1 in (-2, -4) and dx1 == -10
    assert (dy2, dx2) == (14, -28)
    assert min(m.matched for m in reg.matches) > 100
