"""Can a default model learn real noise? Mixed real and simulated pairs, with each camera left out.

``training/real_noise.py`` fine-tunes the shipped model on frames 1-2 of the real sequences
(Noise2Noise), the white-noise single frames of ``fits/train`` (Neighbor2Neighbor) and
simulated pairs, all at once. This trains that candidate on every sequence, and once more
without each sequence in turn, then scores frame 1 of every sequence as
``finetune_real.py`` does (against the mean of frames 3..N, the reference's noise taken out):

- a sequence the candidate trained on measures what it learnt there (frames 3..N unseen);
- a sequence it was trained without is a camera it has not seen: what a default taught on
  real noise would do for a user's camera, which is the question for shipping it.

Usage::

    .venv/bin/python benchmarks/default_real_noise.py --minutes 10

The candidates are kept in ``runs/real_noise/`` (git-ignored) so that the shipping rule's
tuning-set benchmarks can be run on them (``benchmarks/star_refit.py --model PATH`` and the
crowded-field check in ``benchmarks/evaluate.py``'s docstring). The table goes to
``benchmarks/results/default_real_noise.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import finetune_real as fr
from _harness import write_results
from napari_astrodenoise.core.pipeline import denoise

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.real_noise import train_candidate  # noqa: E402

OUT = ROOT / "runs" / "real_noise"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="budget of each candidate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    folders = fr.sequence_folders()
    if len(folders) < 2:
        print("needs two real sequences; nothing to measure", file=sys.stderr)
        return 0
    variants = [("all sequences", [])] + [(f"without {f.name}", [f.name]) for f in folders]
    lines = [
        "# A default taught real noise: mixed real and simulated pairs, each camera left out",
        "",
        f"Command: `.venv/bin/python benchmarks/default_real_noise.py --minutes {args.minutes:g}`",
        "",
        "Each candidate is the shipped model fine-tuned by `training/real_noise.py` (frames 1-2 "
        "of the sequences trained on, the white-noise single frames of `fits/train`, simulated "
        "pairs). Scores: frame 1 against the mean of frames 3..N, the reference's noise taken "
        "out (`finetune_real.py`); dB is how much lower the candidate's squared error is than "
        "the shipped model's (positive: better).",
        "",
    ]
    models = {}
    for label, leave in variants:
        name = "astrodenoise-real" + "".join(f"-no-{n.split('_')[1]}" for n in leave)
        print(f"training {name} ({label})", flush=True)
        start = time.time()
        path = train_candidate(
            minutes=args.minutes,
            out=OUT,
            name=name,
            leave_out=leave,
            seed=args.seed,
            overwrite=True,  # runs/ is this script's own scratch folder
        )
        models[label] = (path, set(leave))
        lines.append(f"- {name} ({label}): {time.time() - start:.0f} s, `{path.name}`")
    lines += [
        "",
        "| candidate | sequence | camera seen in training | faint sky dB | extended dB | "
        "star flux err (shipped) | spurious (shipped) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for folder in folders:
        case = fr.build_case(folder)
        shipped = fr.score(case, denoise(case.frame1, model="default", bayer=case.bayer), 0.0)
        for label, (path, left) in models.items():
            out = denoise(case.frame1, model=str(path), bayer=case.bayer)
            got = fr.score(case, out, 0.0)
            row = (
                f"| {label} | {case.name} | {'no' if folder.name in left else 'yes'} | "
                f"{fr.db(shipped['mse'], got['mse']):+.2f} | "
                f"{fr.db(shipped['mse_ext'], got['mse_ext']):+.2f} | "
                f"{100 * got['flux']:.2f} % ({100 * shipped['flux']:.2f} %) | "
                f"{got['spurious']} ({shipped['spurious']}) |"
            )
            lines.append(row)
            print(row, flush=True)
    write_results("default_real_noise", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
