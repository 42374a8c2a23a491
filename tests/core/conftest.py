"""Fixtures for the engine tests: small models built here, never a shipped default."""

from __future__ import annotations

import pytest
import torch

from napari_astrodenoise.core.model import ResUNet, ResUNetConfig
from napari_astrodenoise.core.weights import load_model, save_model


def _build(tmp_path_factory, name: str, *, identity: bool, in_channels: int = 3):
    torch.manual_seed(0)
    module = ResUNet(ResUNetConfig(in_channels=in_channels, width=8, depth=2))
    if not identity:  # a random residual: output depends on context, like a real network
        torch.nn.init.normal_(module.tail.weight, std=0.05)
    path = tmp_path_factory.mktemp("models") / f"{name}.safetensors"
    save_model(module, path, name=name, softening=3.0)
    return path


@pytest.fixture(scope="session")
def identity_model_path(tmp_path_factory):
    """A freshly initialised ResUNet: its zeroed tail makes it the identity."""
    return _build(tmp_path_factory, "identity-test", identity=True)


@pytest.fixture(scope="session")
def random_model_path(tmp_path_factory):
    """A small ResUNet with a random, context-dependent residual."""
    return _build(tmp_path_factory, "random-test", identity=False)


@pytest.fixture(scope="session")
def random_model(random_model_path):
    return load_model(random_model_path)


@pytest.fixture(scope="session")
def identity_model(identity_model_path):
    return load_model(identity_model_path)
