"""The bad-input corpus through the reader and the command: one line, exit 2, nothing written.

Every case is made on the fly by ``_corpus.py``. For each: the reader returns None or
raises a clear error, the command exits with its status and one line naming the fault,
no output or temporary file is left, and the input's bytes are unchanged.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from _corpus import BAD_INPUTS, BAD_MODELS, ODD_INPUTS, make, make_model, sha256, sky
from napari_astrodenoise import cli
from napari_astrodenoise._reader import napari_get_reader
from napari_astrodenoise.fits_io import FitsReadError, read_fits

SRC = Path(__file__).resolve().parents[1] / "src"


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _left_in(folder: Path) -> list[str]:
    """Every name left in a folder, hidden temporaries included."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the command loads a model (its checks come first)."""
    from napari_astrodenoise.core import weights

    def refuse(*_args, **_kwargs):
        raise AssertionError("the model was loaded before the checks")

    monkeypatch.setattr(weights, "load_model", refuse)


# --------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_the_reader_refuses_a_bad_input_with_its_reason(tmp_path, case):
    maker, name, reason = BAD_INPUTS[case]
    path = make(tmp_path, maker, name)
    before = sha256(path)
    with pytest.raises(FitsReadError, match=reason) as caught:
        read_fits(path)
    assert name in str(caught.value) and "\n" not in str(caught.value)
    reader = napari_get_reader(str(path))  # taken by name, never opened here
    if reader is not None:
        with pytest.raises(FitsReadError, match=reason):
            reader(str(path))
    assert sha256(path) == before


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_the_command_refuses_a_bad_input_in_one_line(tmp_path, capsys, random_model, case):
    maker, name, reason = BAD_INPUTS[case]
    path = make(tmp_path / "in", maker, name)
    before = sha256(path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = ["denoise", path, "-o", out_dir / "o.fits", "--model", random_model.path, "--quiet"]
    code, _, err = _run(capsys, *argv)
    assert code == cli.EXIT_BAD_INPUT
    line = _one_line(err)
    assert line.startswith("astrodenoise denoise: error: ") and reason in line
    assert _left_in(out_dir) == []
    assert sha256(path) == before


@pytest.mark.parametrize("case", sorted(ODD_INPUTS))
def test_an_odd_but_sound_input_is_read_and_denoised(tmp_path, capsys, random_model, case):
    maker, name = ODD_INPUTS[case]
    path = make(tmp_path, maker, name)
    before = sha256(path)
    expected = read_fits(path)[0].data
    assert expected.shape == sky().shape
    out = path.parent / f"{path.name} denoised.fits"
    argv = ["denoise", path, "-o", out, "--model", random_model.path, "--quiet"]
    argv += ["--tile-size", "32"]
    code, stdout, err = _run(capsys, *argv)
    assert code == 0, err
    assert fits.getdata(out).shape == expected.shape
    assert sha256(path) == before
    assert str(out) in stdout


def test_compressed_pixels_are_those_of_the_plain_file(tmp_path):
    plain = read_fits(make(tmp_path, lambda p: p.write_bytes(_corpus_fits()), "plain.fits"))
    for case in ("gzip_named_fits", "bzip2_named_fits", "bzip2"):
        maker, name = ODD_INPUTS[case]
        image = read_fits(make(tmp_path, maker, name))[0]
        assert np.array_equal(image.data, plain[0].data), case


def _corpus_fits() -> bytes:
    from _corpus import fits_bytes

    return fits_bytes()


def test_a_warning_of_astropy_on_a_file_that_fails_is_in_the_one_line(tmp_path, capsys):
    from _corpus import fits_bytes

    good = fits_bytes()
    # a card that loses a byte: the header is no longer whole blocks, astropy warns first
    damaged = good.replace(b"EXTEND  =                    T", b"EXTEND  = \xe9                  T")
    path = tmp_path / "damaged.fits"
    path.write_bytes(damaged[:2879] + damaged[2880:])
    code, _, err = _run(capsys, "starmask", path, "-o", tmp_path / "m.fits")
    assert code == cli.EXIT_BAD_INPUT
    line = _one_line(err)
    assert "astropy warned:" in line and "non-ASCII" in line
    assert not (tmp_path / "m.fits").exists()


# --------------------------------------------------------------------------- any path


def test_a_non_ascii_path_with_spaces_works_for_every_command(tmp_path, capsys, random_model):
    folder = tmp_path / "Jérôme"
    folder.mkdir()
    path = folder / "NGC 7000 Ha.fits"
    fits.PrimaryHDU(sky((64, 64))).writeto(path)
    model = ["--model", random_model.path]
    code, _, err = _run(
        capsys, "denoise", path, "--output-dir", folder / "sortie été", *model, "--quiet",
        "--tile-size", "32",
    )  # fmt: skip
    assert code == 0, err
    out = folder / "sortie été" / "NGC 7000 Ha_denoised.fits"
    history = "".join(str(h) for h in fits.getheader(out)["HISTORY"])
    assert "J\\xe9r\\xf4me/NGC 7000 Ha.fits" in history
    code, _, err = _run(capsys, "starmask", path, "-o", folder / "masque étoilé.fits")
    assert code == 0, err
    code, _, err = _run(capsys, "seams", path, "-o", folder / "coutures.fits", *model,
                        "--tile-size", "32")  # fmt: skip
    assert code == 0, err
    assert "J\\xe9r\\xf4me" in "".join(
        str(h) for h in fits.getheader(folder / "coutures.fits")["HISTORY"]
    )


def test_the_napari_writer_takes_a_non_ascii_path_and_layer_name(tmp_path):
    from napari_astrodenoise._writer import write_fits_layer

    target = tmp_path / "Jérôme" / "NGC 7000 Ha — débruité.fits"
    target.parent.mkdir()
    meta = {"name": "NGC 7000 Hα", "metadata": {"astrodenoise": {"history": ["né ici"]}}}
    written = write_fits_layer(str(target), sky(), meta)
    assert written == [str(target)]
    history = [str(h) for h in fits.getheader(target)["HISTORY"]]
    assert "saved from napari layer 'NGC 7000 H\\u03b1'" in history
    assert "n\\xe9 ici" in history


# --------------------------------------------------------------------------- outputs


def _sky_input(tmp_path: Path) -> Path:
    path = tmp_path / "in.fits"
    fits.PrimaryHDU(sky()).writeto(path)
    return path


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        (lambda t: ["-o", t / "nowhere" / "o.fits"], "does not exist"),
        (lambda t: ["-o", t], "is a folder"),
        (lambda t: ["-o", t / "in.fits"], "exists; pass --overwrite"),
        (lambda t: ["-o", t / "o.fits.fz"], ".fz files is not supported"),
        (lambda t: ["--output-dir", t / "in.fits"], "a file of that name exists"),
    ],
    ids=["missing-folder", "a-folder", "exists", "fz", "output-dir-is-a-file"],
)
def test_an_unwritable_output_is_refused_before_the_model_loads(
    tmp_path, capsys, no_model_load, where, reason
):
    path = _sky_input(tmp_path)
    before = sha256(path)
    code, _, err = _run(capsys, "denoise", path, *where(tmp_path), "--quiet")
    assert code == cli.EXIT_BAD_INPUT
    assert reason in _one_line(err)
    assert _left_in(tmp_path) == ["in.fits"]
    assert sha256(path) == before


@pytest.mark.parametrize(
    "error", [errno.EROFS, errno.EACCES, errno.ENOSPC], ids=["read-only", "denied", "full"]
)
def test_a_folder_that_takes_no_file_is_refused_before_the_model_loads(
    tmp_path, capsys, monkeypatch, no_model_load, error
):
    from napari_astrodenoise import _preflight

    path = _sky_input(tmp_path)

    def refuse(*_args, **_kwargs):
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(_preflight.tempfile, "mkstemp", refuse)
    code, _, err = _run(capsys, "denoise", path, "-o", tmp_path / "o.fits", "--quiet")
    assert code == cli.EXIT_BAD_INPUT
    assert os.strerror(error) in _one_line(err)
    assert _left_in(tmp_path) == ["in.fits"]


def test_a_disk_that_fills_during_the_write_leaves_no_partial_file(
    tmp_path, capsys, monkeypatch, random_model
):
    from napari_astrodenoise import fits_write

    path = _sky_input(tmp_path)
    before = sha256(path)
    (tmp_path / "o.fits").write_bytes(b"the user's old output")

    def full(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fits_write.os, "fsync", full)
    argv = ["denoise", path, "-o", tmp_path / "o.fits", "--overwrite", "--quiet"]
    code, _, err = _run(capsys, *argv, "--model", random_model.path, "--tile-size", "32")
    assert code == cli.EXIT_BAD_INPUT
    line = _one_line(err)
    assert "No space left on device" in line and "o.fits" in line
    assert _left_in(tmp_path) == ["in.fits", "o.fits"]
    assert (tmp_path / "o.fits").read_bytes() == b"the user's old output"
    assert sha256(path) == before


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_a_broken_model_file_is_one_line_naming_the_file(
    tmp_path, capsys, identity_model_path, case
):
    config = make_model(identity_model_path, tmp_path / "model", case)
    path = _sky_input(tmp_path)
    code, _, err = _run(capsys, "denoise", path, "-o", tmp_path / "o.fits", "--model", config)
    assert code == cli.EXIT_BAD_INPUT
    line = _one_line(err)
    assert BAD_MODELS[case][1] in line
    assert "model file " + str(tmp_path / "model") in line
    assert not (tmp_path / "o.fits").exists()


def test_models_lists_a_broken_user_model_as_unusable(capsys, models_dir, identity_model_path):
    make_model(identity_model_path, models_dir, "no_sha256")
    code, out, _ = _run(capsys, "models")
    assert code == 0
    assert "identity-test [user]: unusable:" in out


# --------------------------------------------------------------------------- signals

_SLOW_WRITE = """
import os, sys, time
from napari_astrodenoise import cli, fits_write

def slow_fsync(fd):
    print("writing", flush=True)
    time.sleep(60)

fits_write.os.fsync = slow_fsync
sys.exit(cli.main(sys.argv[1:]))
"""

_SLOW_NETWORK = """
import sys, time
from napari_astrodenoise import cli
from napari_astrodenoise.core import predictor

real = predictor.TilePredictor.__call__

def slow(self, tiles):
    print("denoising", flush=True)
    time.sleep(60)
    return real(self, tiles)

predictor.TilePredictor.__call__ = slow
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    ("signal_name", "code", "word"),
    [("SIGINT", cli.EXIT_CANCELLED, "cancelled"), ("SIGTERM", cli.EXIT_TERMINATED, "terminated")],
)
@pytest.mark.parametrize(
    ("script", "marker"),
    [(_SLOW_WRITE, "writing"), (_SLOW_NETWORK, "denoising")],
    ids=["while-writing", "while-denoising"],
)
def test_a_signal_leaves_nothing_behind(
    tmp_path, random_model, signal_name, code, word, script, marker
):
    import signal

    path = _sky_input(tmp_path)
    before = sha256(path)
    argv = ["denoise", path, "-o", tmp_path / "o.fits", "--model", random_model.path]
    argv += ["--quiet", "--tile-size", "32"]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # as from a terminal: a suite started in the background inherits SIGINT ignored,
        # and Python then never turns Ctrl-C into KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout.readline().strip() == marker
        proc.send_signal(getattr(signal, signal_name))
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code
    assert _one_line(err) == f"astrodenoise denoise: {word}; nothing written"
    assert _left_in(tmp_path) == ["in.fits"]
    assert sha256(path) == before
