"""A default candidate that has seen real noise: the shipped model fine-tuned on a mix of sources.

The per-user fine-tune (``napari_astrodenoise.finetune``) learns one camera from one target.
A default model has to serve every camera, so this trains one model on several kinds of
self-supervised pairs at once, each with the fine-tune's own data and loss (linear units,
the target's noise as weight, Neighbor2Neighbor for single frames):

- ``pairs``: frames 1 and 2 of each real sequence in ``../shared/data/sequences/``
  (Noise2Noise; registered, cropped and level-matched as the fine-tune does). Frames 3..N are
  never read, so ``benchmarks/finetune_real.py``'s reference stays unseen. ``--leave-out``
  drops a sequence, to measure what the model does for a camera it has not seen;
- ``singles``: each single frame in ``../shared/data/fits/train/`` whose noise passes the
  fine-tune's white-noise check (Neighbor2Neighbor); the others are skipped with the reason;
- ``sim``: simulated scenes (``simulate.sky.simulate_scene``) with two independent
  Poisson-Gaussian noise draws each, a Noise2Noise pair on the simulator's noise, so that
  what the model learnt of synthetic noise is not traded away.

Each step draws its whole batch from one source, chosen by ``--weights`` (split evenly
within a group); validation cycles through every source, so the early stop listens to all
of them. Usage::

    .venv/bin/python -m training.real_noise --minutes 10 --out runs/real_noise
    .venv/bin/python -m training.real_noise --minutes 10 --leave-out als_m27_asi224mc_bayer

It writes ``<out>/<name>.safetensors`` and ``.json`` (the sources, weights, steps, time and
validation losses in the JSON's ``real_noise`` record); ``benchmarks/default_real_noise.py``
measures such a model on the real sequences and the shipping rule's tuning set.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import permutations
from pathlib import Path

import numpy as np

from napari_astrodenoise.finetune.api import _trainable_copy
from napari_astrodenoise.finetune.data import Source, TileSampler, tile_layout
from napari_astrodenoise.finetune.frames import check_frames, load_frames
from napari_astrodenoise.finetune.loop import TrainSettings, train
from napari_astrodenoise.finetune.prepare import build_sampler, measure_single, registered_planes
from napari_astrodenoise.fits_io import is_fits_path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
#: share of the steps each group of sources gets
WEIGHTS = {"pairs": 0.4, "singles": 0.2, "sim": 0.4}
#: simulated scenes: count, side, and the sky in electrons (log-uniform), read noise 5 e-
SIM_SCENES = 8
SIM_SIDE = 384
SIM_SKY_E = (25.0, 400.0)
SIM_SEED = 1_000_000  # far from evaluate.py's (10_000_000 + i) and the tuning set's


@dataclass
class MixedSampler:
    """Draws each batch from one of several samplers (the fine-tune loop's interface)."""

    samplers: list[TileSampler]
    weights: np.ndarray
    names: list[str]
    _turn: int = field(default=0, repr=False)

    def sample(self, rng: np.random.Generator, n: int, *, validation: bool = False):
        if validation:  # round robin: every source gets its share of the fixed tiles
            k = self._turn % len(self.samplers)
            self._turn += 1
        else:
            k = int(rng.choice(len(self.samplers), p=self.weights))
        return self.samplers[k].sample(rng, n, validation=validation)


def sequence_sampler(folder: Path, *, softening: float, tile_size: int) -> TileSampler:
    """Frames 1 and 2 of a sequence as a Noise2Noise pair, both ways."""
    paths = sorted(p for p in folder.iterdir() if is_fits_path(p))[:2]
    subs = load_frames([str(p) for p in paths])
    check_frames(subs, single=False)
    planes, reg, record = registered_planes(subs, "all")
    return build_sampler(
        planes,
        subs,
        reg,
        record,
        softening=softening,
        tile_size=tile_size,
        validation_fraction=0.15,
    )


def single_sampler(path: Path, *, softening: float, tile_size: int) -> TileSampler:
    """One frame, Neighbor2Neighbor; ValueError when its noise is not white."""
    subs = load_frames([str(path)])
    check_frames(subs, single=True)
    planes, _reg, record = measure_single(subs[0])
    return build_sampler(
        planes,
        subs,
        None,
        record,
        softening=softening,
        tile_size=tile_size,
        validation_fraction=0.15,
    )


def sim_sampler(*, softening: float, tile_size: int, seed: int = SIM_SEED) -> TileSampler:
    """Simulated scenes, mono and colour in turn, each with two independent noise draws."""
    from napari_astrodenoise.simulate.noise import poisson_gaussian, reference_level
    from napari_astrodenoise.simulate.sky import simulate_scene

    rng = np.random.default_rng(seed)
    sources = []
    for i in range(SIM_SCENES):
        scene = simulate_scene((SIM_SIDE, SIM_SIDE), channels=3 if i % 2 else 1, seed=seed + i)
        clean = scene.image
        lo, hi = np.log(SIM_SKY_E)
        gain = float(np.exp(rng.uniform(lo, hi))) / reference_level(clean)
        for k in range(2):
            noisy = poisson_gaussian(clean, gain=gain, read_noise=5.0, seed=rng)
            sources.append(Source.of(noisy, f"sim{i}-{k}", softening=softening))
    pairs = [(2 * i + a, 2 * i + b) for i in range(SIM_SCENES) for a, b in permutations(range(2))]
    tile, split = tile_layout((SIM_SIDE, SIM_SIDE), tile_size=tile_size, validation_fraction=0.15)
    return TileSampler(sources, pairs, tile, split)


def build_mix(
    *,
    softening: float,
    tile_size: int = 96,
    leave_out: Sequence[str] = (),
    weights: dict[str, float] | None = None,
    use: Sequence[str] = tuple(WEIGHTS),
    data: Path = DATA,
) -> tuple[MixedSampler, dict]:
    """The mixed sampler and a record of its sources (and of the frames it skipped).

    ``use`` names the groups taken (``"pairs"``, ``"singles"``, ``"sim"``; all by default).
    """
    weights = weights or WEIGHTS
    groups: dict[str, list[tuple[str, TileSampler]]] = {"pairs": [], "singles": [], "sim": []}
    skipped = []
    seq_dir = data / "sequences"
    folders = sorted(p for p in seq_dir.iterdir() if p.is_dir()) if seq_dir.is_dir() else []
    for folder in folders if "pairs" in use else []:
        if folder.name in leave_out:
            skipped.append({"source": folder.name, "why": "left out"})
            continue
        sampler = sequence_sampler(folder, softening=softening, tile_size=tile_size)
        groups["pairs"].append((folder.name, sampler))
    train_dir = data / "fits" / "train"
    singles = sorted(train_dir.glob("*.fits")) if train_dir.is_dir() else []
    for path in singles if "singles" in use else []:
        try:
            sampler = single_sampler(path, softening=softening, tile_size=tile_size)
        except ValueError as exc:
            skipped.append({"source": path.name, "why": str(exc)})
            continue
        groups["singles"].append((path.name, sampler))
    if "sim" in use:
        sim = sim_sampler(softening=softening, tile_size=tile_size)
        groups["sim"].append(("simulated pairs", sim))
    samplers, shares, names = [], [], []
    for group, members in groups.items():
        for name, sampler in members:
            samplers.append(sampler)
            shares.append(weights[group] / len(members))
            names.append(f"{group}: {name}")
    shares = np.asarray(shares, dtype=float)
    shares /= shares.sum()
    record = {
        "sources": [
            {"source": n, "share": round(float(s), 4)} for n, s in zip(names, shares, strict=True)
        ],
        "skipped": skipped,
        "group_weights": {g: w for g, w in weights.items() if g in use},
        "sim": {
            "scenes": SIM_SCENES,
            "side": SIM_SIDE,
            "sky_e": list(SIM_SKY_E),
            "read_noise_e": 5.0,
            "seed": SIM_SEED,
        },
    }
    return MixedSampler(samplers, shares, names), record


def train_candidate(
    *,
    minutes: float,
    out: Path,
    name: str,
    leave_out: Sequence[str] = (),
    use: Sequence[str] = tuple(WEIGHTS),
    seed: int = 0,
    base: str = "default",
    data: Path = DATA,
    overwrite: bool = False,
    log=print,
) -> Path:
    """Fine-tune ``base`` on the mix for ``minutes`` and save it under ``out``; its JSON path.

    A model of that name already in ``out`` is refused before any work, unless
    ``overwrite``.
    """
    import torch

    from napari_astrodenoise.core.progress import drain
    from napari_astrodenoise.core.weights import load_model, save_model

    target = out / f"{name}.safetensors"
    if not overwrite and (target.exists() or target.with_suffix(".json").exists()):
        msg = f"{target} exists: pass overwrite=True (--overwrite) to replace it"
        raise FileExistsError(msg)
    started = time.perf_counter()
    loaded = load_model(base, device="cpu")
    mix, record = build_mix(softening=loaded.softening, leave_out=leave_out, use=use, data=data)
    for source in record["sources"]:
        log(f"  {source['source']}: {source['share']:.3f} of the steps")
    for skip in record["skipped"]:
        log(f"  skipped {skip['source']}: {skip['why']}")
    torch.manual_seed(seed)
    module = _trainable_copy(loaded)
    settings = TrainSettings(
        batch_size=8,
        learning_rate=1e-4,
        budget_s=60.0 * minutes,
        max_steps=None,
        validate_every=50,
        patience=10,
        validation_tiles=16 * len(mix.samplers),
    )
    loop = train(
        module, mix, settings, rng=np.random.default_rng(seed), device="cpu", started=started
    )

    def report(event) -> None:
        if event.kind != "step":
            log(f"  step {event.step}: validation {event.val_loss:.4f}")

    outcome = drain(loop, report)
    record.update(
        {
            "base": {"name": loaded.name, "sha256": loaded.sha256},
            "left_out": list(leave_out),
            "steps": outcome.steps,
            "best_step": outcome.best_step,
            "stopped": outcome.stopped,
            "learning_rate_decays": outcome.lr_decays,
            "weight_average_decay": outcome.average_decay,
            "train_time_s": round(outcome.train_s, 1),
            "wall_time_s": round(time.perf_counter() - started, 1),
            "validation": {
                "loss_before": round(outcome.val_before, 6),
                "loss_after": round(outcome.val_after, 6),
            },
            "seed": seed,
            "torch": torch.__version__,
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    return save_model(
        module,
        target,
        name=name,
        softening=loaded.softening,
        extra={
            "description": f"{loaded.name} fine-tuned on real and simulated noise pairs",
            "origin": "training",
            "real_noise": record,
        },
    ).with_suffix(".json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="time budget, setup included (default 10)"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "runs" / "real_noise", help="folder for the model"
    )
    parser.add_argument("--name", default="astrodenoise-real", help="the model's name")
    parser.add_argument("--leave-out", nargs="*", default=[], help="sequence folders to skip")
    parser.add_argument(
        "--use",
        nargs="+",
        choices=list(WEIGHTS),
        default=list(WEIGHTS),
        help="source groups to train on (default: all)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace a model of that name")
    args = parser.parse_args(argv)
    path = train_candidate(
        minutes=args.minutes,
        out=args.out,
        name=args.name,
        leave_out=args.leave_out,
        use=args.use,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
