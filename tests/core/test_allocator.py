"""batch_memory_kept: glibc reuses the network's freed blocks while tiles run, then lets go."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from napari_astrodenoise.core import allocator, tiling

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# four 16 MiB blocks alive at once, written, freed: a batch's activations as the tiler sees
# them; page faults per batch inside the context, then after leaving it
_CHURN = """
import json, resource
import numpy as np
from napari_astrodenoise.core.allocator import batch_memory_kept
def batch():
    blocks = [np.ones(4 << 20, dtype=np.float32) for _ in range(4)]
    return sum(float(b[-1]) for b in blocks)
def faults():
    batch()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        batch()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
with batch_memory_kept() as kept:
    inside = faults()
after = faults()
print(json.dumps({"kept": kept, "inside": inside, "after": after}))
"""


class _FakeLibc:
    def __init__(self, calls: list) -> None:
        self.calls = calls

    def malloc_trim(self, pad: int) -> None:
        self.calls.append(("trim", pad))


def _churn(**env: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _CHURN],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_freed_blocks_are_reused_inside_and_handed_back_after():
    run = _churn()
    # 64 MiB written per batch is 16384 pages; glibc's thresholds hand many of them back
    assert run["kept"] is True
    assert run["after"] > 500
    assert run["inside"] < 0.05 * run["after"]


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_the_environment_leaves_glibc_alone():
    run = _churn(**{allocator.ENV: "0"})
    assert run["kept"] is False
    assert run["inside"] > 500 and run["after"] > 500


def test_nested_and_concurrent_runs_set_the_thresholds_once_and_restore_once(monkeypatch):
    calls = []

    monkeypatch.setattr(allocator, "_depth", [0])  # no run left open by another test
    monkeypatch.setattr(allocator, "_libc", lambda: _FakeLibc(calls))
    monkeypatch.setattr(allocator, "_thresholds", lambda _, t, m: calls.append((t, m)))
    with allocator.batch_memory_kept(), allocator.batch_memory_kept():
        assert calls == [(allocator.TRIM_THRESHOLD, allocator.MMAP_THRESHOLD)]
    default = allocator.GLIBC_DEFAULT
    assert calls[1:] == [(default, default), ("trim", 0)]
    assert allocator._depth == [0]


def test_an_error_inside_still_restores_glibc_defaults(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "_depth", [0])
    monkeypatch.setattr(allocator, "_libc", lambda: _FakeLibc(calls))
    monkeypatch.setattr(allocator, "_thresholds", lambda _, t, m: calls.append((t, m)))
    with pytest.raises(RuntimeError), allocator.batch_memory_kept():
        raise RuntimeError
    default = allocator.GLIBC_DEFAULT
    assert calls[-2:] == [(default, default), ("trim", 0)]
    assert allocator._depth == [0]


def test_every_tiled_run_keeps_its_batches_memory(monkeypatch, context_spy):
    monkeypatch.setattr(tiling, "batch_memory_kept", context_spy)
    image = np.zeros((1, 64, 64), dtype=np.float32)
    out = tiling.tiled_apply(image, lambda tiles: tiles, tile_size=32, overlap=0.25)
    np.testing.assert_array_equal(out, image)
    assert context_spy.seen == ["enter", "leave"]
