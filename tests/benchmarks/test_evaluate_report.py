"""benchmarks/evaluate.py's report says how it was run and where its real frames came from."""

from __future__ import annotations

import os

import _cases as cs
import _harness as hs
import evaluate as ev

#: One simulated 128 px scene through the untrained (identity) network, no PNG.
SMOKE = ["--quick", "--model", "untrained", "--methods", "model", "--no-png", "--n-sim", "1"]


def test_shared_data_is_shown_relative_to_the_repository():
    shown = hs.shown(cs.ROOT.parent / "shared" / "data" / "fits" / "train")
    assert shown == os.path.join("..", "shared", "data", "fits", "train")


def test_the_report_carries_its_command_and_the_frames_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(hs, "RESULTS", tmp_path)
    argv = [*SMOKE, "--data-dir", str(tmp_path / "frames"), "--tag", "smoke"]  # no frames there
    assert ev.main(argv) == 0
    text = (tmp_path / "eval_smoke.md").read_text()
    assert "Command: `.venv/bin/python benchmarks/evaluate.py --quick --model untrained" in text
    assert f"--data-dir {tmp_path / 'frames'} --tag smoke`" in text
    assert f"References (real frames from {hs.shown(tmp_path / 'frames')}):" in text
    assert "- sim00_" in text


def test_without_real_frames_the_report_names_no_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(hs, "RESULTS", tmp_path)
    assert ev.main([*SMOKE, "--no-real", "--tag", "sims"]) == 0
    assert "\nReferences:\n" in (tmp_path / "eval_sims.md").read_text()
