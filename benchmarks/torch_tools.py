"""torch's own speed tools on the shipped network, on this CPU: what pays and what does not.

One tile shape (256 x 256, the engine's default), the shipped default model (a random
default-size ResUNet when none is shipped), network time only (no tiler, no safeguards).
Rows:

- memory format: channels_last (what the engine uses) against contiguous (NCHW);
- precision: fp32 against the bf16 inner levels (``precision="bf16"``);
- ``torch.compile`` (inductor, CPU) of the same module, fp32 and bf16, its compile time
  shown apart;
- threads against batch size: 1 and 2 torch threads, batches of 1, 2, 4 and 8 tiles.

Each row is the best of ``--repeats`` timed passes after a warm-up (the best, not the mean:
other work on the machine only ever slows a pass down). It prints a markdown table and writes
it to ``benchmarks/results/torch_tools.md``. Usage::

    .venv/bin/python benchmarks/torch_tools.py               # all rows
    .venv/bin/python benchmarks/torch_tools.py --no-compile  # skip torch.compile (minutes)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
TILE = 256


def network() -> tuple[torch.nn.Module, str]:
    """The shipped default network (eval mode, CPU), else a random default-size ResUNet."""
    from napari_astrodenoise.core.model import ResUNet
    from napari_astrodenoise.core.weights import ModelNotFoundError, load_model

    try:
        loaded = load_model("default", device="cpu")
        return loaded.module.eval(), f"{loaded.name} (shipped)"
    except ModelNotFoundError:
        torch.manual_seed(0)
        return ResUNet().eval(), "random default-size ResUNet (no model shipped)"


def best_seconds(run, repeats: int) -> float:
    """The fastest of ``repeats`` passes of ``run()``, after one warm-up pass."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def tiles_per_second(module, *, batch: int, inner, channels_last: bool, repeats: int) -> float:
    """Throughput of ``module`` on batches of ``batch`` random tiles."""
    channels = module.config.in_channels + (1 if module.config.noise_channel else 0)
    x = torch.randn(batch, channels, TILE, TILE)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def run() -> None:
        with torch.inference_mode():
            module(x, inner_dtype=inner)

    return batch / best_seconds(run, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    args = parser.parse_args(argv)
    module, label = network()
    module = module.to(memory_format=torch.channels_last)
    cores = os.cpu_count() or 1
    rows: list[tuple[str, str, int, int, float, str]] = []

    def add(what: str, precision: str, threads: int, batch: int, rate: float, note: str = ""):
        rows.append((what, precision, threads, batch, rate, note))
        print(
            f"{what:<28} {precision:<5} threads {threads} batch {batch}: {rate:6.2f} tiles/s "
            f"{note}",
            file=sys.stderr,
            flush=True,
        )

    torch.set_num_threads(cores)
    for precision, inner in (("fp32", None), ("bf16", torch.bfloat16)):
        for channels_last in (True, False):
            rate = tiles_per_second(
                module, batch=4, inner=inner, channels_last=channels_last, repeats=args.repeats
            )
            add(
                "eager, " + ("channels_last" if channels_last else "contiguous"),
                precision,
                cores,
                4,
                rate,
            )
    for threads in sorted({1, cores}):
        torch.set_num_threads(threads)
        for batch in (1, 2, 4, 8):
            rate = tiles_per_second(
                module, batch=batch, inner=None, channels_last=True, repeats=args.repeats
            )
            add("eager, channels_last", "fp32", threads, batch, rate)
    torch.set_num_threads(cores)
    if args.compile:
        compiled = torch.compile(module)
        for precision, inner in (("fp32", None), ("bf16", torch.bfloat16)):
            x = torch.randn(
                4, module.config.in_channels + int(module.config.noise_channel), TILE, TILE
            ).contiguous(memory_format=torch.channels_last)
            start = time.perf_counter()
            try:
                with torch.inference_mode():
                    compiled(x, inner_dtype=inner)
            except Exception as err:  # a compile failure is a result
                add(
                    "torch.compile (inductor)",
                    precision,
                    cores,
                    4,
                    float("nan"),
                    f"failed: {type(err).__name__}: {str(err).splitlines()[0][:80]}",
                )
                continue
            compile_s = time.perf_counter() - start
            rate = tiles_per_second(
                compiled, batch=4, inner=inner, channels_last=True, repeats=args.repeats
            )
            add(
                "torch.compile (inductor)",
                precision,
                cores,
                4,
                rate,
                f"compiled in {compile_s:.0f} s",
            )
    base = {
        p: r for w, p, t, b, r, _ in rows if w == "eager, channels_last" and t == cores and b == 4
    }
    lines = [
        "# torch's speed tools on the shipped network",
        "",
        f"- host: {platform.node() or 'unknown'}, {platform.machine()}, {cores} cores, "
        f"torch {torch.__version__}",
        f"- model: {label}; tile {TILE} x {TILE}; network time only; best of "
        f"{args.repeats} passes after a warm-up",
        "- command: `.venv/bin/python benchmarks/torch_tools.py`"
        + ("" if args.compile else " --no-compile"),
        "- the first row and the 'eager, channels_last, fp32' row at the same threads and "
        "batch are one configuration measured twice: their difference is this machine's "
        "run-to-run spread",
        "",
        "| what | precision | threads | batch | tiles/s | MPix/s | vs eager channels_last, "
        f"{cores} threads, batch 4 | note |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for what, precision, threads, batch, rate, note in rows:
        ref = base.get(precision)
        ratio = f"{rate / ref:.2f}" if ref and np.isfinite(rate) else "-"
        lines.append(
            f"| {what} | {precision} | {threads} | {batch} | {rate:.2f} | "
            f"{rate * TILE * TILE / 1e6:.2f} | {ratio} | {note} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "torch_tools.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
