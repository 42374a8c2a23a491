"""Prove that a refactoring changed no output: old and new code on the same inputs, byte for byte.

The code of ``--base`` (a git commit, default ``HEAD``) is checked out into a temporary git
worktree; each side runs in its own subprocess with its own ``src/`` first on ``sys.path``
and writes every output to an ``.npz`` (arrays) plus a JSON (provenance, settings). The two
are then compared exactly: the table says, for each case and output, whether the bytes are
equal and, if not, the largest difference.

Cases: the shared evaluation frames (``../shared/data/fits/eval``, skipped where absent) and
the bundled samples (m13, synthetic), each denoised at the defaults and, on the samples, with
non-default options (self-ensemble, strict flux lock, safeguards off, star protection), plus
the soft star mask and the tile-seam map of a crop. Usage::

    .venv/bin/python benchmarks/same_outputs.py --base 3f52155
    .venv/bin/python benchmarks/same_outputs.py --base HEAD~3 --quick   # samples only
    .venv/bin/python benchmarks/same_outputs.py --base 3f52155 --reworded /provenance/history

Exit status 0 when every output is identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "data" / "fits" / "eval"

# (case name, extra denoise options); every input gets the first, samples get all
VARIANTS = {
    "defaults": {},
    "ensemble2_strict": {"ensemble": 2, "lock_threshold": 0.0},
    "guards_off": {"flux_lock": 0.0, "change_limit": 0.0, "peak_cap": 0, "star_refit": 0.0},
    "protect_half": {"strength": 0.7, "star_protection": 0.5, "tile_size": 128, "overlap": 0.5},
}


def _inputs(quick: bool) -> list[tuple[str, object]]:
    """(label, FitsImage) pairs: bundled samples, then the shared evaluation frames."""
    from napari_astrodenoise._sample_data import sample_image
    from napari_astrodenoise.fits_io import read_fits

    items = [(name, sample_image(name)) for name in ("m13", "synthetic")]
    if not quick and EVAL.is_dir():
        items += [(p.stem, read_fits(p)[0]) for p in sorted(EVAL.glob("*.fits"))]
    return items


def dump(out_dir: Path, quick: bool) -> None:
    """Run every case with the importable package and write its outputs under ``out_dir``."""
    import napari_astrodenoise as ad

    print(f"  package: {Path(ad.__file__).parent}", file=sys.stderr)
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, object] = {}
    for label, image in _inputs(quick):
        axis = None if image.data.ndim == 2 else 0
        bayer = image.bayer_pattern is not None
        layout = {"channel_axis": axis, "bayer": bayer}
        variants = VARIANTS if label in ("m13", "synthetic") else {"defaults": {}}
        for variant, options in variants.items():
            gen = ad.iter_denoise(image.data, **layout, **options)
            while True:
                try:
                    next(gen)
                except StopIteration as stop:
                    result = stop.value
                    break
            key = f"{label}/{variant}"
            arrays[f"{key}/output"] = result.output()
            arrays[f"{key}/model_mask"] = result.model_mask
            meta[key] = {"provenance": result.provenance(), "settings": result.settings}
            print(f"  {key}", file=sys.stderr, flush=True)
        arrays[f"{label}/star_mask"] = ad.star_mask(image.data, channel_axis=axis)
        crop = image.data[..., :256, :256] if not bayer else image.data[:256, :256]
        report = ad.seam_map(crop, tile_size=64, overlap=0.25, **layout)
        arrays[f"{label}/seam_diff"] = report.diff
        meta[f"{label}/seam_sigma"] = np.asarray(report.seam_sigma).tolist()
    np.savez(out_dir / "arrays.npz", **arrays)
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))


def _run_side(src: Path, out_dir: Path, quick: bool) -> None:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    argv = [sys.executable, __file__, "--dump", str(out_dir)] + (["--quick"] if quick else [])
    subprocess.run(argv, env=env, check=True)


def _worktree(base: str, where: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), base],
        check=True,
        capture_output=True,
    )
    return where


def compare(old: Path, new: Path, reworded: tuple[str, ...] = ()) -> list[tuple[str, str, str]]:
    """Rows (output, verdict, detail) for every output of either side.

    Metadata leaves under a path in ``reworded`` (e.g. ``/provenance/history``, a sentence
    whose wording a change means to alter) are shown as "reworded" and do not count.
    """
    rows = []
    a, b = np.load(old / "arrays.npz"), np.load(new / "arrays.npz")
    for key in sorted(set(a.files) | set(b.files)):
        if key not in a.files or key not in b.files:
            rows.append((key, "MISSING", "only in " + ("new" if key in b.files else "old")))
            continue
        x, y = a[key], b[key]
        if x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes():
            rows.append((key, "identical", f"{x.dtype} {x.shape}"))
        else:
            with np.errstate(invalid="ignore"):
                diff = np.nanmax(np.abs(x.astype(np.float64) - y.astype(np.float64)))
            rows.append((key, "DIFFERENT", f"max |diff| {diff:.3g}"))
    ma = json.loads((old / "meta.json").read_text())
    mb = json.loads((new / "meta.json").read_text())
    for key in sorted(set(ma) | set(mb)):
        old, new = ma.get(key), mb.get(key)
        if old == new:
            rows.append((f"{key} (metadata)", "identical", ""))
            continue
        diffs = _differences(old, new)
        verdict = "DIFFERENT"
        if all(d.startswith(reworded) for d in diffs) and reworded:
            verdict = "reworded"
        rows.append((f"{key} (metadata)", verdict, "; ".join(diffs)))
    return rows


def _differences(old: object, new: object, where: str = "") -> list[str]:
    """Paths of the leaves that differ between two JSON values, with both values."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _differences(old.get(k), new.get(k), f"{where}/{k}")
        return out
    return [] if old == new else [f"{where}: {old!r} -> {new!r}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="git commit of the old code")
    parser.add_argument("--quick", action="store_true", help="the bundled samples only")
    parser.add_argument(
        "--reworded",
        nargs="*",
        default=[],
        metavar="PATH",
        help="metadata paths whose wording may differ (e.g. /provenance/history)",
    )
    parser.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dump is not None:
        dump(args.dump, args.quick)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tree = _worktree(args.base, tmp / "base")
        try:
            (tmp / "old").mkdir()
            (tmp / "new").mkdir()
            print(f"old code: {args.base}", file=sys.stderr)
            _run_side(tree / "src", tmp / "old", args.quick)
            print("new code: working tree", file=sys.stderr)
            _run_side(ROOT / "src", tmp / "new", args.quick)
            rows = compare(tmp / "old", tmp / "new", tuple(args.reworded))
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False
            )
    lines = [f"# Same outputs: {args.base} against the working tree", ""]
    lines += ["| output | verdict | detail |", "|---|---|---|"]
    lines += [f"| {k} | {v} | {d} |" for k, v, d in rows]
    bad = sum(v == "DIFFERENT" or v == "MISSING" for _, v, _ in rows)
    same = sum(v == "identical" for _, v, _ in rows)
    lines += ["", f"{same} identical, {len(rows) - same - bad} reworded, {bad} different"]
    text = "\n".join(lines)
    print(text)
    results = ROOT / "benchmarks" / "results"
    (results / "same_outputs.md").write_text(text + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
