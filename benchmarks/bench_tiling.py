"""Speed and memory of tiled inference: our tiler against MONAI's sliding_window_inference.

Each case runs in a fresh subprocess so that its peak resident memory is its own. Cases:

- 4096 x 4096 mono and 3 x 2048 x 2048 colour, network space, the same torch model:
  ours with ``blend="gaussian"`` at overlap 0.25 in fp32 and with the network in bf16
  (``precision="bf16"``: all but the first and last convolutions), ours with ``blend="none"``,
  ours with every grid laid over the mirror-padded image (``ours-padded``: the layout before
  edge tiles could grow into the padding instead of taking a row of tiles more), and
  MONAI's ``sliding_window_inference`` (mode "gaussian", sigma_scale 0.125, same tile and
  overlap, fp32);
- end to end: ``denoise()`` on a 6000 x 4000 colour frame at default settings, with
  ``precision="fp32"`` and ``"bf16"``, back to back.

The engine sets glibc's malloc thresholds when it runs (:mod:`napari_astrodenoise.core.allocator`).
So that the table shows what that is worth, ours in fp32 also runs with glibc's defaults
(``ASTRODENOISE_TUNE_MALLOC=0``), end to end too, and MONAI runs both out of the box (its
row is the "time / MONAI" reference) and with the same thresholds set.

The table also gives the shipped network's arithmetic (FLOP per pixel of one tile pass,
counted by ``torch.utils.flop_counter``) and this machine's measured matmul peak in fp32 and
bf16, so that each row shows how far it is from the time its arithmetic alone would take.

It prints a markdown table and writes it to ``benchmarks/results/tiling_<host>.md``. Usage::

    .venv/bin/python benchmarks/bench_tiling.py            # all cases
    .venv/bin/python benchmarks/bench_tiling.py --quick    # smaller images, a smoke run

Each case runs ``--repeat`` times (default 3), in rounds over all cases so that a slow
spell of a shared machine falls on every case alike, and the fastest run is reported.

Without a shipped model a randomly initialised default-size ResUNet is timed (speed does not
depend on the weights); the table says which.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from napari_astrodenoise.core import allocator

RESULTS = Path(__file__).resolve().parent / "results"


def _network(device: str):
    """(torch module, label): the shipped default, else a random default-size ResUNet."""
    import torch

    from napari_astrodenoise.core.model import ResUNet
    from napari_astrodenoise.core.weights import ModelNotFoundError, load_model

    try:
        loaded = load_model("default", device=device)
        return loaded.module, f"{loaded.name} (shipped)"
    except ModelNotFoundError:
        torch.manual_seed(0)
        module = ResUNet().to(device).eval()
        torch.nn.init.normal_(module.tail.weight, std=0.01)
        return module, "random default-size ResUNet (no model shipped)"


def _predictors(module, channels: int, device: str, precision: str = "fp32"):
    """A torch predictor (for MONAI) and a numpy one (for ours) around the same network."""
    import torch

    model_channels = module.config.in_channels
    inner = torch.bfloat16 if precision == "bf16" else None

    def torch_predict(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device)
        if channels != model_channels:
            x = x.expand(-1, model_channels, -1, -1)
        if module.config.noise_channel:  # a flat noise map: the same work as a measured one
            x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        with torch.inference_mode():
            x = x.contiguous(memory_format=torch.channels_last)
            out = module(x, inner_dtype=inner)[:, :model_channels]
        return out.mean(dim=1, keepdim=True) if channels != model_channels else out

    def numpy_predict(tiles: np.ndarray) -> np.ndarray:
        return torch_predict(torch.from_numpy(tiles)).float().cpu().numpy()

    return torch_predict, numpy_predict


def run_case(case: dict) -> dict:
    """One measurement, in this process."""
    import torch

    from napari_astrodenoise.core import tiling

    torch.set_num_threads(torch.get_num_threads())
    device = case["device"]
    rng = np.random.default_rng(0)
    shape = case["shape"]
    if case["engine"] == "denoise":
        from napari_astrodenoise.core.pipeline import denoise

        image = (1000 + rng.normal(0, 10, size=shape)).astype(np.float32)
        _, label = _network(device)
        model = "default" if label.endswith("(shipped)") else _random_model_file(device)
        t0 = time.perf_counter()
        out = denoise(
            image, model=model, channel_axis=0, device=device, precision=case["precision"]
        )
        seconds = time.perf_counter() - t0
        return {"seconds": seconds, "model": label, "finite": bool(np.isfinite(out).all())}

    module, label = _network(device)
    image = rng.normal(0, 0.35, size=shape).astype(np.float32)  # network-space sky noise
    torch_predict, numpy_predict = _predictors(module, shape[0], device, case["precision"])
    numpy_predict(image[None, :, :64, :64])  # warm-up
    t0 = time.perf_counter()
    if case["engine"] == "monai":
        from monai.inferers import sliding_window_inference

        # "tuned": glibc's thresholds set as the engine sets them for its tiles
        kept = allocator.batch_memory_kept if case["malloc"] == "tuned" else contextlib.nullcontext

        with torch.inference_mode(), kept():
            out = sliding_window_inference(
                torch.from_numpy(image)[None],
                roi_size=(case["tile"], case["tile"]),
                sw_batch_size=case["batch"],
                predictor=torch_predict,
                overlap=case["overlap"],
                mode="gaussian",
                sigma_scale=0.125,
                padding_mode="reflect",
            )[0].numpy()
    else:
        with padded_grid(case["engine"] == "ours-padded"):
            out = tiling.tiled_apply(
                image,
                numpy_predict,
                tile_size=case["tile"],
                overlap=case["overlap"],
                blend=case["blend"],
                batch_size=case["batch"],
            )
    seconds = time.perf_counter() - t0
    np.save(case["save"], out)
    return {"seconds": seconds, "model": label}


def _random_model_file(device: str) -> str:
    import tempfile

    from napari_astrodenoise.core.weights import save_model

    module, _ = _network(device)
    path = Path(tempfile.mkdtemp()) / "bench-random.safetensors"
    return str(save_model(module.cpu(), path, name="bench-random"))


def _subprocess(case: dict) -> dict:
    env = dict(os.environ)
    if case.get("malloc") == "glibc":
        env[allocator.ENV] = "0"
    proc = subprocess.run(
        [sys.executable, __file__, "--case", json.dumps(case)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if proc.returncode != 0:
        msg = f"case {case} failed:\n{proc.stderr[-2000:]}"
        raise RuntimeError(msg)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def network_flop_per_pixel(device: str, tile: int = 256) -> float:
    """FLOP of one network pass per pixel of a ``tile`` x ``tile`` tile (a multiply-add is 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    module, _ = _network(device)
    channels = module.config.in_channels + int(module.config.noise_channel)
    x = torch.zeros(1, channels, tile, tile, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() / tile**2


def matmul_peak(dtype_name: str, n: int = 2048, seconds: float = 2.0) -> float:
    """This machine's measured matmul rate in FLOP/s for ``float32`` or ``bfloat16``."""
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # warm-up
    runs, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b)
        runs += 1
    return 2.0 * n**3 * runs / (time.perf_counter() - t0)


@contextlib.contextmanager
def padded_grid(on: bool = True):
    """Within it, every grid is laid over the mirror-padded image, as the tiler did before
    it could grow its edge tiles instead (the ``ours-padded`` row: what that saves)."""
    from napari_astrodenoise.core import tiling

    def padded(n: int, tile: int, stride: int, context: int, offset: int):
        pad = tiling._axis_padding(n, tile, context)
        return pad, tiling._axis_starts(n + sum(pad), tile, stride, offset), 0

    own = tiling._axis_layout
    if on:
        tiling._axis_layout = padded
    try:
        yield
    finally:
        tiling._axis_layout = own


def tile_passes(shape: list[int], blend: str = "gaussian", engine: str = "ours") -> float:
    """Network passes of our tiler over a (C, H, W) frame, in 256 x 256 tiles' worth.

    All channels go in one pass; an edge tile grown into the mirrored padding counts for its
    larger area.
    """
    from napari_astrodenoise.core.tiling import plan_tiles

    with padded_grid(engine == "ours-padded"):
        plan = plan_tiles(tuple(shape[1:]), tile_size=256, overlap=0.25, blend=blend)
    area = 0
    for y, x in plan.padded_origins():
        y0, y1, x0, x1 = plan.input_box(y, x)
        area += (y1 - y0) * (x1 - x0)
    return area / 256**2


#: (engine, blend, precision, malloc): "tuned" is the engine's own setting, "glibc" glibc's
#: defaults; MONAI out of the box is "glibc", the reference of "time / MONAI"
_TILERS = (
    ("ours", "gaussian", "fp32", "tuned"),
    ("ours", "gaussian", "bf16", "tuned"),
    ("ours", "none", "fp32", "tuned"),
    ("ours-padded", "gaussian", "fp32", "tuned"),
    ("ours", "gaussian", "fp32", "glibc"),
    ("monai", "gaussian", "fp32", "glibc"),
    ("monai", "gaussian", "fp32", "tuned"),
)
_MONAI = ("monai", "gaussian", "fp32", "glibc")
#: what a row's label adds for its malloc (the engine's own setting needs no word)
_MALLOC_LABEL = {
    ("ours", "tuned"): "",
    ("ours-padded", "tuned"): "",
    ("ours", "glibc"): ", glibc malloc",
    ("monai", "glibc"): "",
    ("monai", "tuned"): ", tuned malloc",
}
_OURS = ("ours", "gaussian", "fp32", "tuned")


def _best(before: dict | None, now: dict) -> dict:
    """The faster of two runs of a case, with the larger of their peak memories."""
    if before is None:
        return now
    best = dict(min(before, now, key=lambda r: r["seconds"]))
    best["peak_rss_mb"] = max(before["peak_rss_mb"], now["peak_rss_mb"])
    return best


def _tiler_rows(images: dict, args, tmp: Path) -> tuple[list[dict], list[str]]:
    """Every tiler on every image, each in its own process; rows and agreement notes."""
    rows, notes = [], []
    for label, shape in images.items():
        outs, times = {}, {}
        for _ in range(args.repeat):  # rounds over every tiler, so drifts hit them alike
            for engine, blend, precision, malloc in _TILERS:
                save = str(tmp / f"{engine}-{blend}-{precision}-{malloc}-{shape[0]}.npy")
                case = {
                    "malloc": malloc,
                    "engine": engine,
                    "blend": blend,
                    "precision": precision,
                    "shape": shape,
                    "tile": 256,
                    "overlap": 0.25,
                    "batch": 4,
                    "device": args.device,
                    "save": save,
                }
                run = _subprocess(case)
                key = (engine, blend, precision, malloc)
                times.setdefault(key, []).append(run["seconds"])
                if key in outs:  # the same deterministic output: read it once
                    outs[key] = (_best(outs[key][0], run), outs[key][1])
                else:
                    outs[key] = (run, np.load(save))
                print(
                    f"{label:<20} {engine:<6} {blend:<9} {precision} {malloc:<5} "
                    f"{run['seconds']:7.2f} s"
                )
        monai_t = np.array(times[_MONAI])
        ours = outs[_OURS][1]
        h, w = shape[1:]
        for key, (res, _out) in outs.items():
            engine, blend, precision, malloc = key
            rows.append(
                {
                    "image": label,
                    "tiler": f"{engine} {blend} {precision}" + _MALLOC_LABEL[engine, malloc],
                    "seconds": res["seconds"],
                    "mpix_s": h * w / 1e6 / res["seconds"],
                    "peak_rss_mb": res["peak_rss_mb"],
                    # each round against MONAI's run of the same round, the median of those
                    "vs_monai": float(np.median(np.array(times[key]) / monai_t)),
                    "model": res["model"],
                    "passes": tile_passes(shape, blend, engine),
                    "precision": precision,
                }
            )
        diff = np.abs(ours - outs[_MONAI][1])
        bf16 = np.abs(ours - outs[("ours", "gaussian", "bf16", "tuned")][1])
        same = np.array_equal(ours, outs[("ours", "gaussian", "fp32", "glibc")][1])
        inner = diff[:, 256 : h - 256, 256 : w - 256]
        notes.append(
            f"- {label}: |ours - MONAI| (fp32) max {diff.max():.4f}, interior max "
            f"{inner.max() if inner.size else float('nan'):.4f}, mean {diff.mean():.5f}; "
            f"|bf16 - fp32| max {bf16.max():.4f}, rms {np.sqrt(np.mean(bf16**2)):.5f} "
            "(network space, sky noise sigma 0.35); ours with glibc's malloc defaults: "
            f"{'the same output' if same else 'a DIFFERENT output'}"
        )
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small images (smoke run)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each case, in rounds; the fastest is reported (default 3)",
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        case = json.loads(args.case)
        result = run_case(case)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    import tempfile

    import torch

    tmp = Path(tempfile.mkdtemp())
    scale = 4 if args.quick else 1
    mono, colour = 4096 // scale, 2048 // scale
    images = {
        f"{mono}x{mono} mono": [1, mono, mono],
        f"3x{colour}x{colour} colour": [3, colour, colour],
    }
    flop_px = network_flop_per_pixel(args.device)
    peak = {p: matmul_peak(d) for p, d in (("fp32", "float32"), ("bf16", "bfloat16"))}
    rows, notes = _tiler_rows(images, args, tmp)
    e2e_shape = [3, 4000 // scale, 6000 // scale]
    e2e = {}
    for _ in range(args.repeat):
        for precision, malloc in (("fp32", "tuned"), ("bf16", "tuned"), ("fp32", "glibc")):
            case = {"engine": "denoise", "shape": e2e_shape, "device": args.device}
            run = _subprocess({**case, "precision": precision, "malloc": malloc})
            key = precision + _MALLOC_LABEL["ours", malloc]
            e2e[key] = _best(e2e.get(key), run)
            print(f"end to end {key} 3x{e2e_shape[1]}x{e2e_shape[2]}: ", end="")
            print(f"{run['seconds']:.1f} s", flush=True)

    lines = [
        f"# Tiled inference benchmark ({'quick' if args.quick else 'full'})",
        "",
        f"- host: {platform.node()}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}",
        f"- model: {rows[0]['model']}: {flop_px / 1e3:.1f} kFLOP per pixel per tile pass",
        f"- measured matmul peak (2048^2): fp32 {peak['fp32'] / 1e9:.0f} GFLOP/s, bf16 "
        f"{peak['bf16'] / 1e9:.0f} GFLOP/s",
        "- tile 256, overlap 0.25, batch 4; MONAI: sliding_window_inference mode gaussian, "
        "sigma_scale 0.125, padding reflect",
        "- malloc: ours sets glibc's mmap and trim thresholds when it runs "
        "(`core/allocator.py`); 'glibc malloc' rows leave glibc's defaults, 'tuned malloc' "
        "gives MONAI the same setting; time / MONAI is against MONAI out of the box",
        "- command: `.venv/bin/python benchmarks/bench_tiling.py"
        + (" --quick" if args.quick else "")
        + (f" --repeat {args.repeat}`" if args.repeat != 3 else "`"),
        f"- each case run {args.repeat} times in rounds over the cases, each run in a fresh "
        "process; seconds: the fastest run, with the largest peak memory of its runs; "
        "time / MONAI: the median over rounds of the run's time over MONAI's in that round",
        "- limit: the time the network's FLOP alone would take at the fp32 matmul peak "
        "(the bf16 rows run all but the first and last convolutions in bf16; see "
        "`ResUNet.forward`)",
        "",
        "| image | tiler | seconds | MPix/s | peak RSS (MB) | time / MONAI | time / limit |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        limit = row["passes"] * 256**2 * flop_px / peak["fp32"]
        lines.append(
            f"| {row['image']} | {row['tiler']} | {row['seconds']:.2f} | {row['mpix_s']:.2f} "
            f"| {row['peak_rss_mb']:.0f} | {row['vs_monai']:.2f} | {row['seconds'] / limit:.1f} |"
        )
    lines += ["", *notes, ""]
    e2e_passes = tile_passes(e2e_shape)
    e2e_limit = e2e_passes * 256**2 * flop_px / peak["fp32"]
    lines += [
        f"End to end: `denoise()` on a 3 x {e2e_shape[1]} x {e2e_shape[2]} colour frame at "
        f"default settings ({e2e_passes:.0f} tile passes, "
        f"{e2e_passes * 256**2 * flop_px / 1e12:.2f} TFLOP, {e2e_limit:.1f} s at the fp32 "
        f"matmul peak; model: {e2e['fp32']['model']}):",
        "",
        "| precision | seconds | peak RSS (MB) | time / fp32 | time / limit |",
        "|---|---:|---:|---:|---:|",
    ]
    for precision, res in e2e.items():
        lines.append(
            f"| {precision} | {res['seconds']:.1f} | {res['peak_rss_mb']:.0f} "
            f"| {res['seconds'] / e2e['fp32']['seconds']:.2f} | {res['seconds'] / e2e_limit:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    out = RESULTS / f"tiling_{args.device}{suffix}.md"
    out.write_text(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
