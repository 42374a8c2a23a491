"""Does a camera's real noise, once learnt, carry over to another camera? Cross-sequence check.

The shipped model is fine-tuned on all frames of each real sequence in
``../shared/data/sequences/`` (``finetune``, ``--minutes`` each), then frame 1 of every
sequence is scored, as in ``finetune_real.py`` (against the mean of frames 3..N, the
reference's noise taken out), with the shipped model, the model taught on the *other*
sequence (another camera: what a default taught on these frames would do for a user's
camera it has not seen) and the model taught on the same sequence (seen frames, a ceiling,
not a held-out figure). Usage::

    .venv/bin/python benchmarks/finetune_transfer.py --minutes 5

It prints one line per model and sequence and writes them to
``benchmarks/results/finetune_transfer.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import finetune_real as fr
from _harness import write_results
from napari_astrodenoise.core.pipeline import denoise
from napari_astrodenoise.finetune import finetune


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="budget of each fine-tune")
    args = parser.parse_args(argv)
    folders = fr.sequence_folders()
    if len(folders) < 2:
        print("needs two real sequences; nothing to measure", file=sys.stderr)
        return 0
    lines = [
        f"Command: `.venv/bin/python benchmarks/finetune_transfer.py --minutes {args.minutes:g}`",
        "",
    ]
    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ASTRODENOISE_MODELS_DIR"] = tmp
        for folder in folders:
            frames = [str(p) for p in fr.frame_paths(folder)]
            start = time.time()
            r = finetune(
                frames, name=f"taught-{folder.name}", minutes=args.minutes, overwrite=True
            )
            models[folder.name] = r.model
            lines.append(
                f"- trained on {folder.name}: {r.steps} steps ({r.stopped}), validation "
                f"{r.val_loss_before:.4f} -> {r.val_loss_after:.4f}, {time.time() - start:.0f} s"
            )
            print(lines[-1], flush=True)
        lines += [
            "",
            "| scored on | model | gain dB | extended dB | star flux err | spurious |",
            "|---|---|---|---|---|---|",
        ]
        for folder in folders:
            case = fr.build_case(folder)
            noisy = fr.score(case, case.frame1, 0.0)
            others = [f.name for f in folders if f != folder]
            candidates = [("shipped", "default")]
            candidates += [(f"taught on {o}", models[o]) for o in others]
            candidates += [(f"taught on {folder.name} (seen)", models[folder.name])]
            for label, model in candidates:
                r = fr.score(case, denoise(case.frame1, model=model, bayer=case.bayer), 0.0)
                lines.append(
                    f"| {folder.name} | {label} | {fr.db(noisy['mse'], r['mse']):+.2f} | "
                    f"{fr.db(noisy['mse_ext'], r['mse_ext']):+.2f} | {100 * r['flux']:.2f} % | "
                    f"{r['spurious']} |"
                )
                print(lines[-1], flush=True)
    write_results("finetune_transfer", ["# Fine-tuning across cameras", "", *lines, ""])
    return 0


if __name__ == "__main__":
    sys.exit(main())
