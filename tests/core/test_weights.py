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


# --------------------------------------------------------------------------- user models


def test_user_model_directory_follows_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.USER_MODELS_ENV, str(tmp_path / "mine"))
    assert weights.user_models_dir() == tmp_path / "mine"
    monkeypatch.setenv(weights.USER_MODELS_ENV, "")
    from platformdirs import user_data_dir

    expected = weights.Path(user_data_dir("napari-astrodenoise")) / "models"
    assert weights.user_models_dir() == expected


def test_user_models_load_by_name_and_are_listed_with_their_origin(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.USER_MODELS_ENV, str(tmp_path))
    assert weights.user_model_configs() == {}  # an empty (or missing) folder is fine
    shipped = weights.list_models()
    path = weights.user_model_path("my-m27")
    save_model(_module(), path, name="my-m27")
    assert load_model("my-m27").name == "my-m27"
    assert weights.list_models() == shipped  # unchanged: shipped models only
    assert weights.list_models(user=True) == [*shipped, "my-m27"]
    entries = {e.name: e for e in weights.available_models()}
    assert entries["my-m27"].origin == "user"
    assert entries["my-m27"].path == tmp_path / "my-m27.json"
    assert all(entries[n].origin == "shipped" for n in shipped)
    with pytest.raises(ModelNotFoundError, match=r"user models \['my-m27'\]"):
        load_model("nope")


def test_a_shipped_name_is_never_given_to_a_user_model(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.USER_MODELS_ENV, str(tmp_path))
    for name in [*weights.list_models(), "default"]:
        with pytest.raises(ValueError, match="name of a shipped model"):
            weights.user_model_path(name)
    # a file that claims a shipped name in the user folder is ignored: shipped wins
    if weights.list_models():
        shipped = weights.list_models()[0]
        save_model(_module(), tmp_path / "impostor.safetensors", name=shipped)
        assert shipped not in weights.user_model_configs()
        assert load_model(shipped).path.parent == weights.MODELS_DIR


@pytest.mark.parametrize("name", ["", "a b", "../up", "-x", "m.json", "x" * 65])
def test_malformed_user_model_names_are_refused(tmp_path, monkeypatch, name):
    monkeypatch.setenv(weights.USER_MODELS_ENV, str(tmp_path))
    with pytest.raises(ValueError, match="model name"):
        weights.user_model_path(name)


def test_an_existing_user_model_is_replaced_only_with_overwrite(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.USER_MODELS_ENV, str(tmp_path))
    save_model(_module(), weights.user_model_path("mine"), name="mine")
    with pytest.raises(ValueError, match=r"exists.*overwrite=True"):
        weights.user_model_path("mine")
    assert weights.user_model_path("mine", overwrite=True) == tmp_path / "mine.safetensors"


def test_saving_leaves_no_temporary_files(tmp_path):
    save_model(_module(), tmp_path / "m.safetensors")
    save_model(_module(), tmp_path / "m.safetensors")  # replaced in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
