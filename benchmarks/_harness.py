"""The benchmarks' shared harness: the tuning set, safeguard sweeps, table cells, results files.

The tuning set is never the evaluation set: simulated scenes with seeds 20_000_000 + i (the
evaluation uses 10_000_000 + i, training draws far below both), presets in turn, colour and
mono alternating, and the real frames of ``../shared/data/fits/train/`` (the training
frames: their own noise is in the reference, so the gain is capped as in ``evaluate.py``),
prepared as ``_cases.real_reference`` prepares the evaluation frames; each at the three
noise levels of ``evaluate.py`` with the tuning set's own noise seeds.

A safeguard sweep (:func:`run_sweep`) runs the network once per case with every safeguard
off, then applies the engine's safeguards to its change (``safeguards.guard_change``) at
each value of one option: the safeguards tuned before it (:data:`TUNING_ORDER`) at their
defaults, those tuned after it off. That is what ``denoise(...)`` returns with those
settings for finite, non-Bayer input. Every script prints its markdown table and writes it
under ``benchmarks/results/`` (:func:`write_results`).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

import _cases as cs
from napari_astrodenoise.core.options import SAFEGUARDS, defaults, option, turned_off

RESULTS = cs.ROOT / "benchmarks" / "results"

TUNE_SIM_SEED_BASE = 20_000_000
TUNE_NOISE_SEED_BASE = 21_000_000
TRAIN_DIR = cs.ROOT.parent / "shared" / "data" / "fits" / "train"
# the SDSS bands are the planes of the colour cube: measured once, as the cube
TRAIN_IMAGES = ("m51_kpno_b600s.fits", "m67_dss_poss1.fits", "ngc6976_sdss_irg_rgbcube.fits")

#: The safeguards in the order they were added and tuned. A sweep of one keeps those before
#: it at the engine's defaults and turns those after it off, as its table was first made.
TUNING_ORDER = ("flux_lock", "change_limit", "peak_cap", "lock_threshold", "star_refit")


# ------------------------------------------------------------------------------ results


def shown(path: os.PathLike) -> str:
    """``path`` relative to the repository root when it can be (``../shared/...``)."""
    try:
        return os.path.relpath(path, cs.ROOT)
    except ValueError:  # another drive on Windows
        return str(path)


def write_results(stem: str, lines: list[str]) -> None:
    """Print a markdown table and write it to ``benchmarks/results/<stem>.md``."""
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{stem}.md"
    out.write_text(text)
    print(f"written {shown(out)}", file=sys.stderr)


def compact_png(path: os.PathLike, *, grey: bool = False) -> None:
    """Rewrite a matplotlib PNG small: greyscale, or a 256-colour palette (about 1/3 size)."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
    small = rgb.convert("L") if grey else rgb.quantize(256)
    small.save(path, optimize=True)


def cell(value: float | None, fmt: str) -> str:
    """A table cell: ``value`` formatted, ``n/a`` for None, NaN or inf."""
    return "n/a" if value is None or not math.isfinite(value) else format(value, fmt)


def percent(value: float, fmt: str = "+.1f") -> str:
    """A table cell in per cent (``0.012`` -> ``+1.2 %``), ``n/a`` where not finite."""
    return "n/a" if not math.isfinite(value) else format(100 * value, fmt) + " %"


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if np.isfinite(v)]


def finite_mean(values: list[float]) -> float:
    """Mean of the finite values (NaN: none)."""
    finite = _finite(values)
    return float(np.mean(finite)) if finite else float("nan")


def finite_median(values: list[float]) -> float:
    """Median of the finite values (NaN: none)."""
    finite = _finite(values)
    return float(np.median(finite)) if finite else float("nan")


# ------------------------------------------------------------------------------ tuning set


def tuning_references(n_sim: int, crop: int) -> list[cs.Reference]:
    """The tuning set's ``n_sim`` simulated scenes, then its real frames, ``crop`` px."""
    refs = [cs.simulated_reference(i, crop, seed_base=TUNE_SIM_SEED_BASE) for i in range(n_sim)]
    if TRAIN_DIR.is_dir():
        refs += [cs.real_reference(TRAIN_DIR / name, crop) for name in TRAIN_IMAGES]
    else:
        print(f"training frames not found at {TRAIN_DIR}: simulated cases only", file=sys.stderr)
    return [cs.prepare(r) for r in refs]


def tuning_set_text(d: dict[str, list[float]], crop: int) -> str:
    """The tables' sentence on the tuning set, counting the cases of one sweep row ``d``."""
    return (
        f"Tuning set (never the evaluation set): {len(d['sim'])} simulated cases (seeds "
        f"{TUNE_SIM_SEED_BASE} + i) and {len(d['real'])} cases from the training frames "
        f"({', '.join(TRAIN_IMAGES)}), {crop} px crops, the three noise levels of evaluate.py."
    )


def tuning_args(
    description: str,
    argv: list[str] | None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """The options every tuning-set script takes (model, device, scenes, crop).

    ``extra(parser)`` adds a script's own options.
    """
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="auto")
    p.add_argument("--n-sim", type=int, default=12)
    p.add_argument("--crop", type=int, default=256)
    if extra is not None:
        extra(p)
    return p.parse_args(argv)


def eval_set_args(description: str, argv: list[str] | None, quick_help: str) -> argparse.Namespace:
    """The options of a script over ``evaluate.py``'s cases (model, device, scenes, crop,
    levels, real frames, ``--quick``); ``args.argv`` keeps what was given, for the report.

    ``--quick`` means 2 scenes, 128 px crops, the first level and no real frames.
    """
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--n-sim", type=int, default=cs.EVAL_N_SIM)
    p.add_argument("--crop", type=int, default=cs.EVAL_CROP)
    p.add_argument("--levels", nargs="+", choices=list(cs.LEVELS), default=list(cs.LEVELS))
    p.add_argument("--no-real", action="store_true", help="no real frames among the cases")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.n_sim, args.crop, args.levels, args.no_real = 2, 128, [next(iter(cs.LEVELS))], True
    return args


def tuning_setup(description: str, argv: list[str] | None, extra=None):
    """``(args, model, references)`` of a tuning-set script with the common options."""
    from napari_astrodenoise.core.weights import load_model

    args = tuning_args(description, argv, extra)
    return (
        args,
        load_model(args.model, device=args.device),
        tuning_references(args.n_sim, args.crop),
    )


def unguarded(case: cs.Case, loaded) -> np.ndarray:
    """The engine's output for the case's noisy frame, every safeguard off."""
    from napari_astrodenoise.core.pipeline import denoise

    channel_axis = 0 if case.noisy.ndim == 3 else None
    return denoise(case.noisy, model=loaded, channel_axis=channel_axis, **turned_off())


def tuning_cases(
    refs: list[cs.Reference], loaded
) -> Iterator[tuple[cs.Reference, cs.Case, np.ndarray, float]]:
    """``(reference, case, free output, noisy PSNR)`` for every reference and noise level.

    The free output is the network's with every safeguard off; the noise seeds are the
    tuning set's own. A line on stderr after each reference.
    """
    start = time.perf_counter()
    for i, ref in enumerate(refs):
        for j, level in enumerate(cs.LEVELS.values()):
            case = cs.make_case(ref, level, seed=TUNE_NOISE_SEED_BASE + 100 * i + j)
            yield ref, case, unguarded(case, loaded), cs.score(case, case.noisy)["psnr"]
        print(f"[{ref.name}] done, {time.perf_counter() - start:.0f} s", file=sys.stderr)


# ------------------------------------------------------------------------------ sweeps


def defaults_text(*names: str) -> str:
    """The engine's defaults of safeguards as a phrase: "flux lock 8 px, change limit 3 sigma"."""
    return ", ".join(f"{option(n).history} {option(n).default:g} {option(n).unit}" for n in names)


def sweep_settings(name: str, value: float) -> dict:
    """The safeguards of a sweep of ``name`` at ``value`` (see :data:`TUNING_ORDER`)."""
    at = TUNING_ORDER.index(name)
    default, off = defaults(SAFEGUARDS), turned_off(SAFEGUARDS)
    return {
        k: default[k] if i < at else value if i == at else off[k]
        for i, k in enumerate(TUNING_ORDER)
    }


def guarded(noisy: np.ndarray, free: np.ndarray, **settings) -> np.ndarray:
    """``free`` with the engine's safeguards at ``settings`` (``safeguards.guard_change``)."""
    from napari_astrodenoise.core.safeguards import guard_change

    planes = noisy.reshape(-1, *noisy.shape[-2:])
    out, _profile = guard_change(free.reshape(planes.shape) - planes, planes, **settings)
    return out.reshape(noisy.shape)


def sweep(refs: list[cs.Reference], loaded, name: str, values: tuple) -> dict:
    """Score every tuning case with the safeguards of a sweep of option ``name``.

    Per value: the PSNR gains over the noisy input of the ``"sim"`` and ``"real"`` cases
    (simulated first), and per case ``"psnr"`` and the metrics of :func:`_cases.score`
    (``flux_err``, ``flux_bias``, ``spurious``, ``invented``, ``recall``). The network runs
    once per case (:func:`tuning_cases`).
    """
    keys = ("sim", "real", "psnr", "flux_err", "flux_bias", "spurious", "invented", "recall")
    per: dict[object, dict[str, list[float]]] = {v: {k: [] for k in keys} for v in values}
    for ref, case, free, noisy_psnr in tuning_cases(refs, loaded):
        for v in values:
            metrics = cs.score(case, guarded(case.noisy, free, **sweep_settings(name, v)))
            d = per[v]
            d["sim" if ref.kind == "sim" else "real"].append(metrics["psnr"] - noisy_psnr)
            for k in keys[2:]:
                d[k].append(metrics[k])
    return per


def gain_cells(d: dict[str, list[float]]) -> str:
    """The mean-gain cells (simulated, real, all) of a results row."""
    return (
        f"{finite_mean(d['sim']):+.2f} | {finite_mean(d['real']):+.2f} | "
        f"{finite_mean(d['sim'] + d['real']):+.2f}"
    )


#: A sweep table's columns after the first: header and cells of a row ``d``, given the row
#: of the option's off value ``off``
COLUMNS: dict[str, tuple[str, Callable[[dict, dict], str]]] = {
    "gain": (
        "mean gain dB, simulated | mean gain dB, real | mean gain dB, all",
        lambda d, off: gain_cells(d),
    ),
    "worst": (
        "worst case vs {off} dB",
        lambda d, off: f"{float(np.min(np.asarray(d['psnr']) - np.asarray(off['psnr']))):+.2f}",
    ),
    "flux_err": ("median flux err", lambda d, off: f"{100 * finite_median(d['flux_err']):.2f} %"),
    "abs_flux_bias": (
        "median abs flux bias",
        lambda d, off: f"{100 * finite_median(np.abs(d['flux_bias'])):.2f} %",
    ),
    "flux_bias": (
        "median flux bias",
        lambda d, off: f"{100 * finite_median(d['flux_bias']):+.2f} %",
    ),
    "flux_err_real": (
        "median flux err, real",
        lambda d, off: f"{100 * finite_median(d['flux_err'][len(d['sim']) :]):.2f} %",
    ),
    "spurious": ("spurious (total)", lambda d, off: f"{int(np.sum(d['spurious']))}"),
    "invented": ("invented (total)", lambda d, off: f"{int(np.sum(d['invented']))}"),
    "recall": ("mean recall", lambda d, off: f"{finite_mean(d['recall']):.3f}"),
}


@dataclass(frozen=True)
class Sweep:
    """What a safeguard-tuning script sweeps and how its table reads.

    Attributes
    ----------
    option : str
        The engine option swept (``napari_astrodenoise.core.options``).
    values : tuple
        Its values, the off value first.
    title : str
        The table's title: ``"<title> on the tuning set: <model>"``.
    columns : str
        The columns after the first: keys of :data:`COLUMNS`, separated by spaces.
    header : str, optional
        The first column's header (default: the option's name and unit, "flux lock px").
    settings : str
        How the other safeguards are set, as the model line says it (", default flux lock").
    note : str
        The sentence that leads to the engine's default ("Engine default").
    off_label : str
        The first column's text for the off value.
    script : str, optional
        The script's name (default: the option's): results go to ``<script>_<model>.md``.
    command : str
        The command line the results file shows, ``{script}`` and ``{model}`` filled in.
    """

    option: str
    values: tuple
    title: str
    columns: str
    header: str | None = None
    settings: str = ""
    note: str = "Engine default"
    off_label: str = "off"
    script: str | None = None
    command: str = "benchmarks/{script}.py --model {model}"

    @property
    def name(self) -> str:
        """The script's name."""
        return self.script or self.option

    def default_text(self) -> str:
        """The engine's default with its unit: ``8 px``, ``3 sigma``, ``0.04``."""
        opt = option(self.option)
        return f"{opt.default:g}" + (f" {opt.unit}" if opt.unit else "")

    def intro(self, per: dict, loaded, crop: int, command: str) -> list[str]:
        """The title, the model and tuning-set line and the command of a results file."""
        off = per[option(self.option).off]
        return [
            f"# {self.title} on the tuning set: {loaded.name}",
            "",
            f"Model: {loaded.name} (sha256 {loaded.sha256[:12]}){self.settings}. "
            f"{tuning_set_text(off, crop)} {self.note}: {self.default_text()}.",
            "",
            f"Command: `.venv/bin/python {command}`",
            "",
        ]

    def table(self, per: dict) -> list[str]:
        """The markdown table: a row per value."""
        off = per[option(self.option).off]
        opt = option(self.option)
        first = self.header or f"{opt.history} {opt.unit}".strip()
        heads = [COLUMNS[c][0].format(off=self.off_label) for c in self.columns.split()]
        head = " | ".join([first, *heads])
        lines = [f"| {head} |", "|" + "---|" * (head.count("|") + 1)]
        for v in self.values:
            label = self.off_label if v == option(self.option).off else f"{v:g}"
            cells = [COLUMNS[c][1](per[v], off) for c in self.columns.split()]
            lines.append("| " + " | ".join([label, *cells]) + " |")
        return lines


def run_sweep(spec: Sweep, description: str, argv: list[str] | None) -> int:
    """A safeguard-tuning script: sweep, print and write ``<script>_<model>.md``."""
    args, loaded, refs = tuning_setup(description, argv)
    per = sweep(refs, loaded, spec.option, spec.values)
    command = spec.command.format(script=spec.name, model=args.model)
    lines = spec.intro(per, loaded, args.crop, command) + spec.table(per)
    write_results(f"{spec.name}_{loaded.name}", lines)
    return 0
