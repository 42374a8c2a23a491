"""Speed and memory of tiled inference: our tiler against MONAI's sliding_window_inference.

Each case runs in a fresh subprocess so that its peak resident memory is its own. Cases:

- 4096 x 4096 mono and 3 x 2048 x 2048 colour, network space, the same torch model:
  ours with ``blend="gaussian"`` at overlap 0.25, ours with ``blend="none"``, and MONAI's
  ``sliding_window_inference`` (mode "gaussian", sigma_scale 0.125, same tile and overlap);
- end to end: ``denoise()`` on a 6000 x 4000 colour frame at default settings (the goal is
  under 60 s on a 2-core laptop-class CPU).

It prints a markdown table and writes it to ``benchmarks/results/tiling_<host>.md``. Usage::

    .venv/bin/python benchmarks/bench_tiling.py            # all cases
    .venv/bin/python benchmarks/bench_tiling.py --quick    # smaller images, a smoke run

Without a shipped model a randomly initialised default-size ResUNet is timed (speed does not
depend on the weights); the table says which.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

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


def _predictors(module, channels: int, device: str):
    """A torch predictor (for MONAI) and a numpy one (for ours) around the same network."""
    import torch

    model_channels = module.config.in_channels

    def torch_predict(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device)
        if channels != model_channels:
            x = x.expand(-1, model_channels, -1, -1)
        if module.config.noise_channel:  # a flat noise map: the same work as a measured one
            x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        with torch.inference_mode():
            out = module(x.contiguous(memory_format=torch.channels_last))[:, :model_channels]
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
        out = denoise(image, model=model, channel_axis=0, device=device)
        seconds = time.perf_counter() - t0
        return {"seconds": seconds, "model": label, "finite": bool(np.isfinite(out).all())}

    module, label = _network(device)
    image = rng.normal(0, 0.35, size=shape).astype(np.float32)  # network-space sky noise
    torch_predict, numpy_predict = _predictors(module, shape[0], device)
    numpy_predict(image[None, :, :64, :64])  # warm-up
    t0 = time.perf_counter()
    if case["engine"] == "monai":
        from monai.inferers import sliding_window_inference

        with torch.inference_mode():
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
    proc = subprocess.run(
        [sys.executable, __file__, "--case", json.dumps(case)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        msg = f"case {case} failed:\n{proc.stderr[-2000:]}"
        raise RuntimeError(msg)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small images (smoke run)")
    parser.add_argument("--device", default="cpu")
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
    images = {
        "4096x4096 mono": [1, 4096 // scale, 4096 // scale],
        "3x2048x2048 colour": [3, 2048 // scale, 2048 // scale],
    }
    rows = []
    for label, shape in images.items():
        outs = {}
        for engine, blend in (("ours", "gaussian"), ("ours", "none"), ("monai", "gaussian")):
            save = str(tmp / f"{engine}-{blend}-{shape[0]}.npy")
            case = {
                "engine": engine,
                "blend": blend,
                "shape": shape,
                "tile": 256,
                "overlap": 0.25,
                "batch": 4,
                "device": args.device,
                "save": save,
            }
            res = _subprocess(case)
            outs[(engine, blend)] = (res, np.load(save))
            print(f"{label:<20} {engine:<6} {blend:<9} {res['seconds']:7.2f} s", flush=True)
        ours_t = outs[("ours", "gaussian")][0]["seconds"]
        monai_t = outs[("monai", "gaussian")][0]["seconds"]
        diff = np.abs(outs[("ours", "gaussian")][1] - outs[("monai", "gaussian")][1])
        h, w = shape[1:]
        inner = diff[:, 256 : h - 256, 256 : w - 256]
        for (engine, blend), (res, _out) in outs.items():
            mpix = h * w / 1e6
            rows.append(
                {
                    "image": label,
                    "tiler": f"{engine} {blend}",
                    "seconds": res["seconds"],
                    "mpix_s": mpix / res["seconds"],
                    "peak_rss_mb": res["peak_rss_mb"],
                    "vs_monai": res["seconds"] / monai_t if engine == "ours" else 1.0,
                    "model": res["model"],
                }
            )
        rows.append(
            {
                "image": label,
                "agreement": (
                    f"ours/MONAI time {ours_t / monai_t:.2f}; "
                    f"|ours - MONAI| max {diff.max():.4f}, "
                    f"interior max {inner.max() if inner.size else float('nan'):.4f}, "
                    f"mean {diff.mean():.5f} (network space, sky noise sigma 0.35)"
                ),
            }
        )
    e2e_shape = [3, 4000 // scale, 6000 // scale]
    e2e = _subprocess({"engine": "denoise", "shape": e2e_shape, "device": args.device})
    print(
        f"end to end denoise 3x{e2e_shape[1]}x{e2e_shape[2]}: {e2e['seconds']:.1f} s", flush=True
    )

    lines = [
        f"# Tiled inference benchmark ({'quick' if args.quick else 'full'})",
        "",
        f"- host: {platform.node()}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}",
        f"- model: {rows[0]['model']}",
        "- tile 256, overlap 0.25, batch 4; MONAI: sliding_window_inference mode gaussian, "
        "sigma_scale 0.125, padding reflect",
        "- command: `.venv/bin/python benchmarks/bench_tiling.py"
        + (" --quick`" if args.quick else "`"),
        "",
        "| image | tiler | seconds | MPix/s | peak RSS (MB) | time / MONAI |",
        "|---|---|---:|---:|---:|---:|",
    ]
    notes = []
    for row in rows:
        if "agreement" in row:
            notes.append(f"- {row['image']}: {row['agreement']}")
            continue
        lines.append(
            f"| {row['image']} | {row['tiler']} | {row['seconds']:.2f} | {row['mpix_s']:.2f} "
            f"| {row['peak_rss_mb']:.0f} | {row['vs_monai']:.2f} |"
        )
    lines += ["", *notes, ""]
    lines.append(
        f"End to end: `denoise()` on a 3 x {e2e_shape[1]} x {e2e_shape[2]} colour frame at "
        f"default settings took **{e2e['seconds']:.1f} s** (peak RSS {e2e['peak_rss_mb']:.0f} "
        f"MB; model: {e2e['model']})."
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
