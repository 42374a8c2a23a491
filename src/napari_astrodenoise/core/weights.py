"""Model files: safetensors weights plus a JSON config, the registry of shipped models, loading.

A model is two files side by side::

    name.safetensors   the tensors (never a pickle)
    name.json          {"format": "napari-astrodenoise-model/1", "name", "architecture",
                        "normalization", "weights_file", "sha256", "default", "training", ...}

``sha256`` is the hash of the ``.safetensors`` file and is checked on every load, so a
corrupted or swapped file is refused. Shipped models live in the package's ``models/`` folder;
the one whose config says ``"default": true`` is what ``load_model("default")`` gives. No
untrained model is ever registered: the folder holds only exported, trained models.

User models (fine-tuned on a user's own frames, see :mod:`napari_astrodenoise.finetune`) live
in the user model directory, :func:`user_models_dir`: ``$ASTRODENOISE_MODELS_DIR`` when set,
otherwise ``platformdirs.user_data_dir("napari-astrodenoise")/models``. :func:`load_model`
finds them by name after the shipped ones; a user model never takes a shipped model's name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

FORMAT = "napari-astrodenoise-model/1"
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
#: environment variable that overrides the user model directory
USER_MODELS_ENV = "ASTRODENOISE_MODELS_DIR"
#: a user model's name: it is also its file stem
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ModelNotFoundError(LookupError):
    """No model of that name is shipped and no such file exists."""


@dataclass
class LoadedModel:
    """A loaded model with everything needed to run and to record it.

    Attributes
    ----------
    module : torch.nn.Module
        The network, in eval mode, on ``device``.
    config : dict
        The model's JSON config as stored.
    name : str
    path : Path
        The ``.safetensors`` file.
    sha256 : str
        Hash of the weights file (checked on load).
    softening : float
        The normalization's asinh softening (see ``stretch.fit_stretch``).
    device : str
    """

    module: Any
    config: dict
    name: str
    path: Path
    sha256: str
    softening: float
    device: str = "cpu"
    extra: dict = field(default_factory=dict)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_configs(folder: Path = MODELS_DIR) -> dict[str, Path]:
    """Shipped models: name -> JSON config path (files of another format are ignored)."""
    out = {}
    for path in sorted(folder.glob("*.json")):
        try:
            cfg = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if cfg.get("format") == FORMAT:
            out[cfg.get("name", path.stem)] = path
    return out


def list_models(*, user: bool = False) -> list[str]:
    """Names of the models shipped inside the package, the default first.

    With ``user=True`` the user models follow (see :func:`available_models`), sorted by name.
    """
    names = list(model_configs())
    default = default_model_name()
    shipped = sorted(names, key=lambda n: (n != default, n))
    if not user:
        return shipped
    return shipped + sorted(user_model_configs())


@dataclass(frozen=True)
class ModelEntry:
    """One model that :func:`load_model` finds by name.

    Attributes
    ----------
    name : str
    origin : str
        ``"shipped"`` (inside the package) or ``"user"`` (the user model directory).
    path : Path
        Its JSON config.
    default : bool
        Whether it is the shipped default.
    """

    name: str
    origin: str
    path: Path
    default: bool = False


def available_models() -> list[ModelEntry]:
    """Shipped models (the default first), then the user's, with their origin.

    A user model that carries a shipped model's name is hidden (the shipped one wins).
    """
    default = default_model_name()
    shipped = model_configs()
    entries = [ModelEntry(n, "shipped", shipped[n], n == default) for n in list_models()]
    for name, path in sorted(user_model_configs().items()):
        entries.append(ModelEntry(name, "user", path))
    return entries


def user_models_dir() -> Path:
    """The user model directory (it may not exist yet).

    ``$ASTRODENOISE_MODELS_DIR`` when set and not empty, otherwise
    ``platformdirs.user_data_dir("napari-astrodenoise") / "models"``.
    """
    override = os.environ.get(USER_MODELS_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("napari-astrodenoise")) / "models"


def user_model_configs() -> dict[str, Path]:
    """User models: name -> JSON config path; names of shipped models are left out."""
    folder = user_models_dir()
    if not folder.is_dir() or _same_folder(folder, MODELS_DIR):
        return {}
    shipped = model_configs()
    return {n: p for n, p in model_configs(folder).items() if n not in shipped}


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def user_model_path(name: str, *, overwrite: bool = False) -> Path:
    """Where a new user model ``name`` is written (its ``.safetensors``), checked first.

    Parameters
    ----------
    name : str
        1-64 characters: letters, digits, ``.``, ``_``, ``-``, starting with a letter or a
        digit; not ``"default"`` nor a shipped model's name.
    overwrite : bool, optional
        Allow replacing an existing user model of that name.

    Raises
    ------
    ValueError
        The name is malformed or a shipped model's, or a user model of that name exists and
        ``overwrite`` is False.
    """
    if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
        msg = (
            f"model name must be 1-64 letters, digits, '.', '_' or '-' starting with a "
            f"letter or digit, got {name!r}"
        )
        raise ValueError(msg)
    if name.endswith((".json", ".safetensors")):
        msg = f"model name is a name, not a file: drop the suffix from {name!r}"
        raise ValueError(msg)
    if name == "default" or name in model_configs():
        msg = f"{name!r} is the name of a shipped model; choose another name"
        raise ValueError(msg)
    folder = user_models_dir()
    if _same_folder(folder, MODELS_DIR):
        msg = f"the user model directory {folder} is the shipped models' folder; set another"
        raise ValueError(msg)
    path = folder / f"{name}.safetensors"
    existing = name in user_model_configs() or path.exists() or path.with_suffix(".json").exists()
    if existing and not overwrite:
        msg = f"a user model named {name!r} exists ({path}); pass overwrite=True to replace it"
        raise ValueError(msg)
    return path


def default_model_name() -> str | None:
    """Name of the shipped default model, or None while no trained model ships."""
    for name, path in model_configs().items():
        if json.loads(path.read_text()).get("default"):
            return name
    return None


def _resolve(name_or_path: str | os.PathLike) -> Path:
    """The JSON config path for a registry name, a .json path or a .safetensors path."""
    text = str(name_or_path)
    if text == "default":
        name = default_model_name()
        if name is None:
            msg = (
                "no trained default model ships with this installation; "
                "pass a model file (.safetensors with its .json) instead"
            )
            raise ModelNotFoundError(msg)
        text = name
    registry = model_configs()
    if text in registry:
        return registry[text]
    users = user_model_configs()
    if text in users:
        return users[text]
    path = Path(text).expanduser()
    if path.suffix == ".safetensors":
        path = path.with_suffix(".json")
    if path.suffix == ".json" and path.is_file():
        return path
    shipped = sorted(registry) or "none"
    mine = sorted(users) or "none"
    msg = (
        f"no model named {text!r}: shipped models are {shipped}, user models {mine}, "
        f"and no file {path} exists"
    )
    raise ModelNotFoundError(msg)


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> CUDA, then Apple MPS, then CPU; an explicit name is checked."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        msg = f"device {device!r} asked for, but CUDA is not available here"
        raise ValueError(msg)
    if device == "mps" and not getattr(torch.backends, "mps", None).is_available():
        msg = "device 'mps' asked for, but Apple MPS is not available here"
        raise ValueError(msg)
    if device.split(":")[0] not in {"cpu", "cuda", "mps"}:
        msg = f"device must be 'auto', 'cpu', 'cuda[:N]' or 'mps', got {device!r}"
        raise ValueError(msg)
    return device


def load_model(name_or_path: str | os.PathLike = "default", *, device: str = "cpu") -> LoadedModel:
    """Load a model by registry name (``"default"`` included) or by file path.

    Parameters
    ----------
    name_or_path : str or path-like
        A shipped model's name (see :func:`list_models`), ``"default"``, a user model's
        name (see :func:`available_models`), or the path of a model's ``.json`` or
        ``.safetensors`` file.
    device : str, optional
        ``"cpu"`` (default), ``"cuda"``, ``"mps"`` or ``"auto"``.

    Returns
    -------
    LoadedModel
        ``.module`` is the ``torch.nn.Module`` in eval mode; ``.softening`` its normalization.

    Raises
    ------
    ModelNotFoundError
        No such model.
    ValueError
        The config is not a napari-astrodenoise model, or the weights' sha256 does not match.
    """
    from safetensors.torch import load_file

    from napari_astrodenoise.core.model import ResUNet, ResUNetConfig

    config_path = _resolve(name_or_path)
    config = json.loads(config_path.read_text())
    if config.get("format") != FORMAT:
        msg = f"{config_path} is not a napari-astrodenoise model config (format {FORMAT!r})"
        raise ValueError(msg)
    weights = config_path.with_name(config["weights_file"])
    digest = sha256_file(weights)
    if digest != config["sha256"]:
        msg = (
            f"{weights}: sha256 {digest[:12]}... does not match "
            f"its config's {config['sha256'][:12]}..."
        )
        raise ValueError(msg)
    device = resolve_device(device)
    module = ResUNet(ResUNetConfig.from_dict(config["architecture"]))
    module.load_state_dict(load_file(weights, device="cpu"))
    module = module.to(device).eval()
    return LoadedModel(
        module=module,
        config=config,
        name=config.get("name", config_path.stem),
        path=weights,
        sha256=digest,
        softening=float(config["normalization"]["softening"]),
        device=device,
    )


def save_model(
    module: torch.nn.Module,
    path: str | os.PathLike,
    *,
    name: str | None = None,
    softening: float = 3.0,
    default: bool = False,
    extra: dict | None = None,
) -> Path:
    """Export a :class:`ResUNet` as ``path`` (.safetensors) plus its ``.json`` config.

    Parameters
    ----------
    module : ResUNet
    path : path-like
        Target ``.safetensors`` file; the config goes beside it with a ``.json`` suffix.
    name : str, optional
        Registry name (default: the file stem).
    softening : float
        The normalization the model was trained with.
    default : bool
        Mark as the shipped default.
    extra : dict, optional
        More JSON fields, e.g. ``{"training": {...}, "validation": {...}}``.

    Returns
    -------
    Path
        The JSON config path.

    Notes
    -----
    Each file is written to a temporary file in the target folder and renamed over the
    target, so a reader never sees a half-written file; the weights go first, so until the
    config follows, a replaced model fails its sha256 check instead of loading mixed files.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        msg = f"model weights must be saved as .safetensors, got {path.name}"
        raise ValueError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    _atomic_write(path, lambda tmp: save_file(state, tmp))
    config = {
        "format": FORMAT,
        "name": name or path.stem,
        "architecture": module.config.to_dict(),
        "normalization": {"type": "asinh", "softening": float(softening)},
        "weights_file": path.name,
        "sha256": sha256_file(path),
        "default": bool(default),
        **(extra or {}),
    }
    config_path = path.with_suffix(".json")
    text = json.dumps(config, indent=2) + "\n"
    _atomic_write(config_path, lambda tmp: Path(tmp).write_text(text))
    return config_path


def _atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """``write(tmp)`` a temporary file beside ``path``, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a model must be readable by all
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
