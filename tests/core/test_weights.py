"""Model files: safetensors + JSON, sha256 checked, registry, no pickles."""

from __future__ import annotations

import json

import pytest
import torch

from napari_astrodenoise.core import weights
from napari_astrodenoise.core.model import ResUNet, ResUNetConfig
from napari_astrodenoise.core.weights import (
    FORMAT,
    ModelNotFoundError,
    load_model,
    resolve_device,
    save_model,
)


def _module():
    torch.manual_seed(3)
    module = ResUNet(ResUNetConfig(width=8, depth=2))
    torch.nn.init.normal_(module.tail.weight, std=0.05)
    return module


def test_save_then_load_gives_the_same_network(tmp_path):
    module = _module().eval()
    cfg_path = save_model(
        module, tmp_path / "m.safetensors", softening=2.5, extra={"training": {"steps": 7}}
    )
    cfg = json.loads(cfg_path.read_text())
    assert cfg["format"] == FORMAT
    assert cfg["architecture"]["width"] == 8
    assert cfg["training"] == {"steps": 7}
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.softening == 2.5
    assert loaded.sha256 == cfg["sha256"]
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.module(x), module(x))
    # loading by the .json path works too
    assert load_model(cfg_path).name == "m"


def test_weights_are_safetensors_not_pickle(tmp_path):
    save_model(_module(), tmp_path / "m.safetensors")
    head = (tmp_path / "m.safetensors").read_bytes()[:16]
    assert not head.startswith(b"\x80")  # pickle protocol marker
    assert b"PK" not in head[:2]  # not a torch zip archive
    with pytest.raises(ValueError, match=r"\.safetensors"):
        save_model(_module(), tmp_path / "m.pt")


def test_a_tampered_weights_file_is_refused(tmp_path):
    save_model(_module(), tmp_path / "m.safetensors")
    data = bytearray((tmp_path / "m.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "m.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        load_model(tmp_path / "m.json")


def test_registry_lists_shipped_models_default_first(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "MODELS_DIR", tmp_path)
    monkeypatch.setattr(weights.model_configs, "__defaults__", (tmp_path,))
    assert weights.list_models() == []
    with pytest.raises(ModelNotFoundError, match="no trained default model"):
        load_model("default")
    save_model(_module(), tmp_path / "b-fast.safetensors")
    save_model(_module(), tmp_path / "a-quality.safetensors")
    save_model(_module(), tmp_path / "c-main.safetensors", default=True)
    assert weights.list_models() == ["c-main", "a-quality", "b-fast"]
    assert load_model("default").name == "c-main"
    assert load_model("a-quality").name == "a-quality"
    with pytest.raises(ModelNotFoundError, match="no model named 'nope'"):
        load_model("nope")


def test_device_choice():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in {"cpu", "cuda", "mps"}
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
