"""Each safeguard on and off, on real sequences and on the synthetic evaluation set.

What a safeguard costs is the quality the same model would have without it. For every
frame the network runs once, with every safeguard off; the safeguards are then applied to
that free prediction (``guard_change``, as ``denoise`` does) all together, all but one, and
none, so that each row differs from "all on" by one safeguard alone.

- **Real sequences** (``../shared/data/sequences/``): ``finetune_real.py``'s protocol and
  scores: frame 1 against the level-matched mean of frames 3..N, the reference's own noise
  taken out; gain in dB over the noisy frame on faint sky and extended signal, the median
  star-flux error and the spurious stars against the reference. The rule: no safeguard may
  cost more than ``MAX_COST_DB`` on a real sequence.
- **Synthetic evaluation set**: ``evaluate.py``'s cases (simulated scenes and the real
  evaluation frames with simulated noise); PSNR against the clean reference, its star
  metrics.

Usage::

    .venv/bin/python benchmarks/safeguards.py                 # the shipped model
    .venv/bin/python benchmarks/safeguards.py --model NAME    # a user model (fine-tuned)
    .venv/bin/python benchmarks/safeguards.py --quick         # sequences, 2 scenes, 1 level

It prints markdown tables and writes ``benchmarks/results/safeguards_<model>.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator

import numpy as np

import _harness as hs
from _cases import (
    EVAL_DIR,
    LEVELS,
    NOISE_SEED_BASE,
    make_case,
    references,
)
from _cases import score as score_case
from napari_astrodenoise.core.options import SAFEGUARDS, turned_off
from napari_astrodenoise.core.pipeline import iter_denoise
from napari_astrodenoise.core.progress import drain
from napari_astrodenoise.core.safeguards import guard_change
from napari_astrodenoise.core.starrefit import REFIT_WINDOW
from napari_astrodenoise.core.weights import load_model

#: the most a safeguard may cost on a real sequence, dB
MAX_COST_DB = 0.1


def variants() -> Iterator[tuple[str, dict]]:
    """("all on", {}), then each safeguard off alone, then all off."""
    yield "all on", {}
    for name, off in turned_off().items():
        yield f"{name} off", {name: off}
    yield "all off", turned_off()


def free_prediction(image: np.ndarray, model, *, channel_axis=None, bayer: bool = False):
    """One network pass through the engine, every safeguard off (its ``DenoiseResult``)."""
    return drain(
        iter_denoise(image, model=model, channel_axis=channel_axis, bayer=bayer, **turned_off())
    )


def guard_planes(free, **opts: float) -> np.ndarray:
    """The engine's safeguards on a free prediction, back in the caller's layout.

    ``opts`` (``flux_lock`` and the rest) are in pixels of the planes, as ``guard_change``
    takes them; the star refit's window is the engine's, halved for a Bayer mosaic's planes.
    """
    half = 2 if free.plane_map.bayer else 1
    with np.errstate(invalid="ignore"):
        change = free.prediction - free.original
    prediction, _ = guard_change(change, free.original, refit_window=REFIT_WINDOW / half, **opts)
    return free.plane_map.from_planes(prediction)


def guarded_outputs(image: np.ndarray, model, *, channel_axis, bayer: bool):
    """{variant: output}: one network pass, the safeguards applied to its free prediction."""
    free = free_prediction(image, model, channel_axis=channel_axis, bayer=bayer)
    half = 2 if bayer else 1
    defaults = {o.name: o.default for o in SAFEGUARDS}
    outputs = {}
    for label, off in variants():
        opts = {**defaults, **off}
        opts["flux_lock"] = opts["flux_lock"] / half  # in pixels of the planes
        outputs[label] = guard_planes(free, **opts)
    return outputs


def real_tables(model, label: str) -> tuple[list[str], bool]:
    """Each safeguard on the real sequences: the table and whether the rule holds."""
    import finetune_real as fr

    if not fr.SEQUENCES.is_dir():
        return [f"No sequences at {fr.SEQUENCES}: nothing measured on real noise.", ""], True
    lines, ok = [], True
    for folder in fr.sequence_folders():
        print(f"{folder.name}: registering", file=sys.stderr, flush=True)
        case = fr.build_case(folder)
        noisy = fr.score(case, case.frame1, 0.0)["mse"]
        outs = guarded_outputs(case.frame1, model, channel_axis=None, bayer=case.bayer)
        rows, on = [], None
        for name, out in outs.items():
            s = fr.score(case, out, 0.0)
            gain = 10 * math.log10(noisy / s["mse"])
            on = gain if on is None else on
            cost = gain - on  # what turning it off gives back
            passes = name in ("all on", "all off") or cost <= MAX_COST_DB
            ok &= passes
            verdict = "" if name in ("all on", "all off") else ("yes" if passes else "NO")
            rows.append(
                f"| {name} | {gain:+.2f} | {cost:+.2f} | {100 * s['flux']:.2f} % "
                f"| {s['spurious']} | {verdict} |"
            )
            print(rows[-1], file=sys.stderr, flush=True)
        lines += [
            f"### {folder.name}: {label}",
            "",
            "| safeguards | gain dB | off - on dB | star flux err | spurious | cost <= "
            f"{MAX_COST_DB} dB |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    return lines, ok


def synthetic_table(model, args: argparse.Namespace) -> list[str]:
    """Each safeguard on the synthetic evaluation set: mean PSNR change and star metrics."""
    refs = references(
        n_sim=args.n_sim, crop=args.crop, data_dir=None if args.no_real else EVAL_DIR
    )
    sums: dict[str, dict[str, float]] = {}
    cases = 0
    for i, ref in enumerate(refs):
        for j, level in enumerate(args.levels):
            case = make_case(ref, LEVELS[level], seed=NOISE_SEED_BASE + 100 * i + j)
            axis = 0 if case.noisy.ndim == 3 else None
            outs = guarded_outputs(case.noisy, model, channel_axis=axis, bayer=False)
            base = None
            for name, out in outs.items():
                s = score_case(case, out)
                base = s["psnr"] if base is None else base
                acc = sums.setdefault(name, {"db": 0.0, "flux": 0.0, "nflux": 0, "spur": 0.0})
                acc["db"] += s["psnr"] - base
                if math.isfinite(s["flux_err"]):
                    acc["flux"] += s["flux_err"]
                    acc["nflux"] += 1
                acc["spur"] += s["spurious"] if math.isfinite(s["spurious"]) else 0.0
            cases += 1
            print(f"{case.name}: done", file=sys.stderr, flush=True)
    lines = [
        f"### Synthetic evaluation set: {cases} cases ({args.n_sim} simulated scenes"
        f"{'' if args.no_real else ' and the real evaluation frames'}, {args.crop} px, "
        f"levels {', '.join(args.levels)})",
        "",
        "| safeguards | mean PSNR off - on dB | mean star flux err | spurious stars, all cases |",
        "|---|---|---|---|",
    ]
    for name, acc in sums.items():
        flux = acc["flux"] / max(acc["nflux"], 1)
        lines.append(
            f"| {name} | {acc['db'] / cases:+.3f} | {hs.cell(flux, '.4f')} | {acc['spur']:.0f} |"
        )
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    args = hs.eval_set_args(__doc__.splitlines()[0], argv, "sequences, 2 scenes, 128 px, 1 level")
    model = load_model(args.model, device=args.device)
    label = f"{model.name} (sha256 {model.sha256[:12]})"
    real, ok = real_tables(model, label)
    lines = [
        f"# Each safeguard on and off: {label}",
        "",
        f"Command: `{' '.join(['.venv/bin/python', 'benchmarks/safeguards.py', *args.argv])}`",
        "",
        "One network pass per frame; the safeguards applied to its free prediction. "
        "'off - on' is what turning the safeguard off gives back: a positive number is "
        f"its cost. Rule on real noise: no safeguard costs more than {MAX_COST_DB} dB "
        f"(**{'holds' if ok else 'fails'}**).",
        "",
        "## Real sequences (real noise)",
        "",
        *real,
        "## Synthetic evaluation set (simulated noise)",
        "",
        *synthetic_table(model, args),
    ]
    hs.write_results(f"safeguards_{model.name}" + ("_quick" if args.quick else ""), lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
