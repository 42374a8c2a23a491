"""Peak memory of ``astrodenoise denoise`` against the frame size, mono and colour.

Each frame is a simulated float32 sky (noise and stars) written as FITS; the command runs in
a fresh subprocess at its defaults and its peak resident memory (``ru_maxrss``) is read
when it exits. A frame is the float32 image: H x W x 4 bytes, times 3 for colour. The goal
(issue 21) is a peak of at most 3 frames + 0.5 GB. The fixed cost (Python, numpy, astropy,
torch and the model loaded, nothing denoised) is measured the same way and shown apart.

It prints a markdown table and writes it to ``benchmarks/results/memory_denoise.md``.
Usage::

    .venv/bin/python benchmarks/memory.py            # 1024², 4096², 8192² mono, 6000x4000 colour
    .venv/bin/python benchmarks/memory.py --quick    # 1024² and 2048² mono, 1500x1000 colour
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MIB = 1 << 20
#: the goal: at most this many frames plus the allowance below
FRAMES_ALLOWED = 3
ALLOWANCE = 512 * MIB

FULL = [((1024, 1024), 1), ((4096, 4096), 1), ((8192, 8192), 1), ((4000, 6000), 3)]
QUICK = [((1024, 1024), 1), ((2048, 2048), 1), ((1000, 1500), 3)]

_BASELINE = """
import sys
from napari_astrodenoise import cli, fits_io
from napari_astrodenoise.core import pipeline
from napari_astrodenoise.core.weights import load_model
import tqdm
load_model("default", device="cpu")
"""


def write_frame(path: Path, shape: tuple[int, int], channels: int, seed: int = 0) -> int:
    """A noisy float32 sky with stars, (H, W) or (3, H, W), as FITS; returns its bytes."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    full = shape if channels == 1 else (channels, *shape)
    data = rng.standard_normal(full, dtype=np.float32)
    data *= 8.0
    data += 500.0
    h, w = shape
    yy, xx = np.mgrid[-6:7, -6:7]
    star = np.exp(-(yy**2 + xx**2) / 4.0).astype(np.float32)
    n_stars = max(50, h * w // 20_000)
    for y, x, flux in zip(
        rng.integers(6, h - 7, n_stars),
        rng.integers(6, w - 7, n_stars),
        rng.uniform(200.0, 30_000.0, n_stars),
        strict=True,
    ):
        data[..., y - 6 : y + 7, x - 6 : x + 7] += np.float32(flux) * star
    fits.PrimaryHDU(data).writeto(path, overwrite=True)
    return data.nbytes


def peak_rss(argv: list[str]) -> tuple[int, float, int]:
    """(peak RSS in bytes, wall seconds, exit status) of a subprocess."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss * 1024, seconds, proc.returncode


def measure(cases: list[tuple[tuple[int, int], int]], folder: Path) -> list[dict]:
    """One row per frame: its size, the command's peak and time, the goal."""
    rows = []
    for shape, channels in cases:
        src = folder / "in.fits"
        frame = write_frame(src, shape, channels)
        out = folder / "out.fits"
        argv = [sys.executable, "-m", "napari_astrodenoise.cli", "denoise", str(src)]
        argv += ["-o", str(out), "--overwrite", "--quiet", "--device", "cpu"]
        peak, seconds, code = peak_rss(argv)
        if code != 0:
            msg = f"astrodenoise denoise failed on {shape} x {channels} (exit {code})"
            raise RuntimeError(msg)
        rows.append(
            {"shape": shape, "channels": channels, "frame": frame, "peak": peak, "s": seconds}
        )
        src.unlink()
        out.unlink()
    return rows


def table(rows: list[dict], baseline: int, command: str) -> list[str]:
    """The markdown report."""
    import torch

    lines = [
        "# Peak memory of `astrodenoise denoise`",
        "",
        f"- host: {platform.node() or 'unknown'}, {platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu",
        "- input: simulated float32 sky with stars (FITS, uncompressed), default options, "
        "shipped default model",
        f"- goal: peak RSS <= {FRAMES_ALLOWED} frames + 512 MiB (a frame: the float32 image)",
        f"- fixed cost (Python, numpy, astropy, torch, model loaded): {baseline / MIB:.0f} MiB",
        f"- command: `{command}`",
        "",
        "| frame | frame (MiB) | peak RSS (MiB) | (peak - fixed) / frame | goal (MiB) | "
        "within goal | seconds |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        h, w = r["shape"]
        name = f"{w}x{h} mono" if r["channels"] == 1 else f"{w}x{h} colour"
        goal = FRAMES_ALLOWED * r["frame"] + ALLOWANCE
        lines.append(
            f"| {name} | {r['frame'] / MIB:.0f} | {r['peak'] / MIB:.0f} | "
            f"{(r['peak'] - baseline) / r['frame']:.2f} | {goal / MIB:.0f} | "
            f"{'yes' if r['peak'] <= goal else 'NO'} | {r['s']:.1f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    """Measure, print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller frames, a smoke run")
    args = parser.parse_args(argv)
    cases = QUICK if args.quick else FULL
    baseline, _, _ = peak_rss([sys.executable, "-c", _BASELINE])
    with tempfile.TemporaryDirectory(prefix="astrodenoise-memory-") as folder:
        rows = measure(cases, Path(folder))
    command = ".venv/bin/python benchmarks/memory.py" + (" --quick" if args.quick else "")
    lines = table(rows, baseline, command)
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "memory_denoise.md").write_text(text)
        print(f"written {RESULTS / 'memory_denoise.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
