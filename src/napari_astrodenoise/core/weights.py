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


class ModelFileError(ValueError):
    """A model's files exist but cannot be used: one line naming the file and the fault.

    Parameters
    ----------
    path : str or os.PathLike
        The faulty file (the config or the weights).
    fault : str
        What is wrong, in words a user understands.
    """

    def __init__(self, path: str | os.PathLike, fault: str) -> None:
        self.path = os.fspath(path)
        self.fault = fault
        super().__init__(f"model file {self.path}: {fault}")

    def __reduce__(self) -> tuple[type[ModelFileError], tuple[str, str]]:
        return type(self), (self.path, self.fault)


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


def own_options(config: dict) -> dict:
    """The engine options a model's JSON config carries, checked.

    A model may carry ``"options"``: options of a denoising run that it runs with unless the
    caller sets them (a fine-tuned model's flux lock, measured on its own exposures; see
    :mod:`~napari_astrodenoise.finetune.lockcheck`). Names that are not options of a
    denoising run are ignored.
    """
    from napari_astrodenoise.core.options import DENOISE

    own = config.get("options") or {}
    return {o.name: o.check(own[o.name]) for o in DENOISE if o.name in own}


def model_options(name_or_path: str | os.PathLike) -> dict:
    """:func:`own_options` of a model by name or path, its weights not read; {} if unreadable."""
    try:
        return own_options(read_config(_resolve(name_or_path)))
    except (ValueError, ModelNotFoundError):  # ModelFileError is a ValueError
        return {}


def with_model_options(options: dict, loaded: LoadedModel) -> dict:
    """The caller's options over the model's own (:func:`own_options`)."""
    return {**own_options(loaded.config), **options}


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
    ModelFileError
        A ``ValueError`` naming the file and the fault: the config is not JSON, not an
        object, not a napari-astrodenoise model or lacks a field; the weights file is
        missing, a pickle, not safetensors, of another sha256, or does not fit the
        architecture (width, depth) of the config.
    """
    config_path = _resolve(name_or_path)
    config = read_config(config_path)
    weights = config_path.with_name(config["weights_file"])
    digest = _check_weights_file(weights, config["sha256"])
    device = resolve_device(device)
    module = _build_module(config_path, config, weights)
    module = module.to(device).eval()
    return LoadedModel(
        module=module,
        config=config,
        name=config.get("name", config_path.stem),
        path=weights,
        sha256=digest,
        softening=config["normalization"]["softening"],
        device=device,
    )


def read_config(config_path: Path) -> dict:
    """A model's JSON config, checked: the fields :func:`load_model` needs are there.

    Raises
    ------
    ModelFileError
        The file cannot be read, is not JSON, not a JSON object, not this package's
        format, or lacks ``weights_file``, ``sha256``, ``architecture`` or the softening.
    """
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelFileError(config_path, f"cannot be read ({exc.strerror or exc})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(config_path, f"the config is not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        fault = f"the config is a JSON {type(config).__name__}, not an object"
        raise ModelFileError(config_path, fault)
    if config.get("format") != FORMAT:
        fault = f"not a napari-astrodenoise model config (format {FORMAT!r} expected)"
        raise ModelFileError(config_path, fault)
    for key, kind in (("weights_file", str), ("sha256", str), ("architecture", dict)):
        if not isinstance(config.get(key), kind):
            fault = f"the config has no {key!r} ({kind.__name__})"
            raise ModelFileError(config_path, fault)
    normalization = config.get("normalization")
    softening = normalization.get("softening") if isinstance(normalization, dict) else None
    if isinstance(softening, bool) or not isinstance(softening, int | float) or softening <= 0:
        fault = "the config has no positive 'normalization'/'softening'"
        raise ModelFileError(config_path, fault)
    config["normalization"]["softening"] = float(softening)
    return config


#: how a pickle (``torch.save``) starts: protocol 2+ opcode, or the zip of torch >= 1.6
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")


def _check_weights_file(weights: Path, expected: str) -> str:
    """The weights file's sha256, once it is known to be there, safetensors and the right one."""
    try:
        with open(weights, "rb") as handle:
            head = handle.read(8)
    except FileNotFoundError as exc:
        raise ModelFileError(weights, "the weights file is missing") from exc
    except OSError as exc:
        raise ModelFileError(weights, f"cannot be read ({exc.strerror or exc})") from exc
    if head.startswith(_PICKLE_MAGIC):
        fault = "not a safetensors file: it is a pickle (torch.save), which is never loaded"
        raise ModelFileError(weights, fault)
    if len(head) < 8 or int.from_bytes(head, "little") > (100 << 20):
        raise ModelFileError(weights, "not a safetensors file (no valid header)")
    digest = sha256_file(weights)
    if digest != expected:
        fault = f"sha256 {digest[:12]}... does not match its config's {expected[:12]}..."
        raise ModelFileError(weights, fault)
    return digest


def _build_module(config_path: Path, config: dict, weights: Path) -> torch.nn.Module:
    """The ResUNet of a config with the weights of its file, every mismatch said in one line."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from napari_astrodenoise.core.model import ResUNet, ResUNetConfig

    try:
        module = ResUNet(ResUNetConfig.from_dict(config["architecture"]))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(config_path, f"unusable architecture: {exc}") from exc
    try:
        state = load_file(weights, device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(weights, f"not a readable safetensors file ({exc})") from exc
    mismatch = _state_mismatch(module.state_dict(), state)
    if mismatch:
        arch = config["architecture"]
        fault = (
            f"the weights do not fit the architecture of its config (width "
            f"{arch.get('width')}, depth {arch.get('depth')}): {mismatch}"
        )
        raise ModelFileError(weights, fault)
    module.load_state_dict(state)
    return module


def _state_mismatch(expected: dict, found: dict) -> str:
    """What differs between two state dicts, in one phrase ("" when they fit)."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    shapes = [
        k for k in expected if k in found and tuple(expected[k].shape) != tuple(found[k].shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensors missing (first {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} unexpected (first {extra[0]})")
    if shapes:
        k = shapes[0]
        parts.append(
            f"{len(shapes)} of another shape (first {k}: {list(found[k].shape)} in the file, "
            f"{list(expected[k].shape)} expected)"
        )
    return "; ".join(parts)


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
