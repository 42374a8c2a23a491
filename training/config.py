"""A training run's configuration: the tables of one TOML file, checked and filled in.

``[run]`` is :class:`RunConfig` (the optimisation and the loop); ``[model]``, ``[data]``
(with ``[noise]`` and ``[sky]``) and ``[loss]`` are the fields of ``ResUNetConfig``,
:class:`~training.data.DataConfig` and :class:`~training.losses.LossConfig`; ``[export]``
names the exported model. :func:`load_config` reads a file, :func:`parse_config` a dict
(``Config.to_dict()`` gives one back, as each run folder's ``config.json`` holds it).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from napari_astrodenoise.core.model import ResUNetConfig
from training.config_tables import checked_table
from training.data import DataConfig
from training.losses import LossConfig

__all__ = ["SCHEDULES", "Config", "RunConfig", "load_config", "parse_config"]

SCHEDULES = ("cosine", "step", "constant")


@dataclass
class RunConfig:
    """The ``[run]`` table: the optimisation and the loop.

    Attributes
    ----------
    name : str
        Run name (default folder ``runs/<name>``).
    seed : int
        Seed of the weights' initialisation and (unless ``[data]`` sets its own) of the data.
    threads : int
        ``torch.set_num_threads``; 0 leaves torch's default.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"mps"``.
    epochs, steps_per_epoch, batch_size : int
        ``epochs * steps_per_epoch`` optimizer steps of ``batch_size`` fresh tiles each.
    lr : float
        Adam's peak learning rate (default 1e-4).
    weight_decay : float
        Adam's L2 penalty (default 0).
    schedule : {"cosine", "step", "constant"}
        After a linear warm-up of ``warmup_steps``: cosine decay to ``lr * lr_min_factor``,
        or multiply by ``step_gamma`` every ``step_epochs`` epochs, or constant.
    grad_clip : float
        Clip the gradient norm to this (0: no clipping).
    num_workers : int
        Data-loader worker processes (0: tiles are made in the training process).
    val_samples, val_batch_size : int
        Size of the fixed validation set and its batch.
    validate_first : bool
        Validate before the first epoch (epoch 0: the untrained, identity network, which
        gives the noisy input's scores).
    preview_samples : int
        Validation tiles shown in each epoch's preview PNG.
    amp : bool
        bfloat16 autocast on CUDA (ignored elsewhere).
    log_every : int
        Steps between lines of ``steps.jsonl``.
    init : str
        Start from these weights instead of a random initialisation (fine-tuning): a run's
        checkpoint (``runs/quick/checkpoint_best.pt``) or a model the engine loads (a
        registry name such as ``"astrodenoise-quick"``, or a ``.safetensors`` / ``.json``
        path). The architecture must match ``[model]``; the optimizer and schedule start
        fresh. ``""`` (default): random initialisation.
    """

    name: str = "run"
    seed: int = 0
    threads: int = 0
    device: str = "auto"
    epochs: int = 10
    steps_per_epoch: int = 200
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_steps: int = 0
    lr_min_factor: float = 0.05
    step_epochs: int = 10
    step_gamma: float = 0.5
    grad_clip: float = 1.0
    num_workers: int = 0
    val_samples: int = 64
    val_batch_size: int = 16
    validate_first: bool = True
    preview_samples: int = 4
    amp: bool = False
    log_every: int = 50
    init: str = ""

    def __post_init__(self) -> None:
        for name in ("epochs", "steps_per_epoch", "batch_size", "val_samples", "val_batch_size"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                msg = f"run.{name} must be an integer >= 1, got {getattr(self, name)}"
                raise ValueError(msg)
        if self.schedule not in SCHEDULES:
            msg = f"run.schedule must be one of {SCHEDULES}, got {self.schedule!r}"
            raise ValueError(msg)
        if not self.lr > 0:
            msg = f"run.lr must be > 0, got {self.lr}"
            raise ValueError(msg)
        if self.num_workers < 0 or self.threads < 0 or self.warmup_steps < 0:
            msg = "run.num_workers, run.threads and run.warmup_steps must be >= 0"
            raise ValueError(msg)


@dataclass
class Config:
    """A whole training configuration (one TOML file)."""

    run: RunConfig
    model: ResUNetConfig
    data: DataConfig
    loss: LossConfig
    export: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready dict; ``parse_config(config.to_dict())`` rebuilds it."""
        data = self.data.to_dict()
        noise, sky = data.pop("noise"), data.pop("sky")
        return {
            "run": asdict(self.run),
            "model": {k: v for k, v in self.model.to_dict().items() if k != "type"},
            "data": data,
            "noise": noise,
            "sky": sky,
            "loss": self.loss.to_dict(),
            "export": dict(self.export),
        }


def _table(raw: dict, name: str, cls: type) -> dict:
    return checked_table(raw.get(name, {}), name, cls)


def parse_config(raw: dict) -> Config:
    """Build a :class:`Config` from the tables of a TOML file (or ``Config.to_dict()``).

    Tables: ``[run]``, ``[model]`` (``ResUNetConfig`` fields), ``[data]`` (``DataConfig``),
    ``[noise]`` (``NoiseConfig`` fields), ``[sky]`` (``SkyConfig`` overrides), ``[loss]``
    (``LossConfig``), ``[export]`` (``name``, ``description``). Unknown tables or keys are an
    error naming them.
    """
    extra = sorted(set(raw) - {"run", "model", "data", "noise", "sky", "loss", "export"})
    if extra:
        msg = f"unknown tables {extra} in the configuration"
        raise ValueError(msg)
    run = RunConfig(**_table(raw, "run", RunConfig))
    model = ResUNetConfig(**_table(raw, "model", ResUNetConfig))
    data_table = dict(raw.get("data", {}))
    data_table.setdefault("seed", run.seed)
    data_table["noise"] = dict(raw.get("noise", {}))
    data_table["sky"] = dict(raw.get("sky", {}))
    data = DataConfig.from_dict(data_table)
    loss = LossConfig.from_dict(dict(raw.get("loss", {})))
    if model.in_channels != 3 or not model.mask_head:
        msg = "training needs model.in_channels = 3 and model.mask_head = true"
        raise ValueError(msg)
    if model.noise_channel != data.noise_map:
        msg = (
            f"model.noise_channel ({model.noise_channel}) and data.noise_map "
            f"({data.noise_map}) must agree: the noise map is the model's extra input"
        )
        raise ValueError(msg)
    return Config(run=run, model=model, data=data, loss=loss, export=dict(raw.get("export", {})))


def load_config(path: str | os.PathLike) -> Config:
    """Read and check a TOML configuration file."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    with open(path, "rb") as fh:
        raw = tomllib.load(fh)
    raw.setdefault("run", {}).setdefault("name", Path(path).stem)
    return parse_config(raw)
