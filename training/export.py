"""Export a trained run as a shipped model: safetensors weights plus a JSON provenance record.

``python -m training.export RUN_DIR --out DIR`` writes ``DIR/<name>.safetensors`` and
``DIR/<name>.json`` with :func:`napari_astrodenoise.core.weights.save_model`; ``--ship``
writes them into the package's ``models/`` folder as the default model (any other shipped
model loses its ``"default"`` flag). The JSON holds the architecture, the normalization
(softening), the sha256 of the weights, and a ``training`` record: the configuration, the
data description, steps, epochs, tiles seen, wall time, device, torch version and the
validation metrics of the exported checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import torch

from napari_astrodenoise.core.model import ResUNet, ResUNetConfig
from napari_astrodenoise.core.weights import FORMAT, MODELS_DIR, save_model
from training.checkpoints import find_checkpoint, history_of, load_checkpoint

__all__ = ["MAX_SHIPPED_BYTES", "export_run", "main"]

#: A shipped model must stay under this size.
MAX_SHIPPED_BYTES = 10 * 1024 * 1024
_VALIDATION_KEYS = (
    "epoch",
    "step",
    "val_total",
    "psnr",
    "ssim",
    "psnr_input",
    "ssim_input",
    "identity_change",
    "mask_iou",
)


def _clear_other_defaults(folder: Path, keep: str) -> None:
    for path in folder.glob("*.json"):
        if path.name == keep:
            continue
        try:
            cfg = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if cfg.get("format") == FORMAT and cfg.get("default"):
            cfg["default"] = False
            path.write_text(json.dumps(cfg, indent=2) + "\n")


def export_run(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    name: str | None = None,
    ship: bool = False,
    default: bool | None = None,
    checkpoint: str = "best",
    description: str | None = None,
) -> Path:
    """Write a run's model as ``<name>.safetensors`` + ``<name>.json``.

    Parameters
    ----------
    run_dir : path-like
        A run folder written by ``training.train``.
    out_dir : path-like, optional
        Target folder; required unless ``ship``.
    name : str, optional
        Model name (default: ``[export] name`` of the run's config, else ``astrodenoise-<run>``).
    ship : bool
        Write into the package's ``models/`` folder as the default model.
    default : bool, optional
        Mark as default (default: ``ship``).
    checkpoint : {"best", "last"}
        Lowest validation loss (default) or the last epoch.
    description : str, optional
        One line for the model's JSON (default: ``[export] description`` of the run's config).

    Returns
    -------
    Path
        The JSON config path.

    Raises
    ------
    ValueError
        The weights exceed ``MAX_SHIPPED_BYTES`` (the files are removed again when shipping).
    """
    run_dir = Path(run_dir)
    if out_dir is None and not ship:
        msg = "give an output folder, or ship=True to export into the package"
        raise ValueError(msg)
    folder = MODELS_DIR if ship else Path(out_dir)
    default = ship if default is None else default
    ckpt = load_checkpoint(find_checkpoint(run_dir, checkpoint))
    config, state = ckpt["config"], ckpt["state"]
    name = name or config.get("export", {}).get("name") or f"astrodenoise-{config['run']['name']}"
    module = ResUNet(ResUNetConfig(**config["model"]))
    module.load_state_dict(ckpt["model"])
    module.eval()
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    record = state["history"][-1] if state["history"] else {}
    extra = {
        "description": description
        or config.get("export", {}).get(
            "description",
            "ResUNet denoiser for linear astronomical images (network space: asinh stretch)",
        ),
        "training": {
            "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "checkpoint": checkpoint,
            **history_of(ckpt),
            "device": summary.get("device", config["run"]["device"]),
            "torch": torch.__version__,
            "config": config,
            "data": state.get("data", {}),
            **({"init": state["init"]} if "init" in state else {}),
        },
        "validation": {k: record[k] for k in _VALIDATION_KEYS if k in record},
    }
    path = folder / f"{name}.safetensors"
    json_path = save_model(
        module,
        path,
        name=name,
        softening=config["data"]["softening"],
        default=default,
        extra=extra,
    )
    size = path.stat().st_size
    if size > MAX_SHIPPED_BYTES:
        if ship:
            path.unlink()
            json_path.unlink()
        limit = MAX_SHIPPED_BYTES / 2**20
        msg = f"{path.name} is {size / 2**20:.1f} MiB, over the {limit:.0f} MiB limit"
        raise ValueError(msg)
    if default:
        _clear_other_defaults(folder, json_path.name)
    return json_path


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m training.export``."""
    p = argparse.ArgumentParser(
        prog="python -m training.export", description=__doc__.splitlines()[0]
    )
    p.add_argument("run_dir", type=Path, help="run folder written by training.train")
    p.add_argument("--out", type=Path, help="output folder for <name>.safetensors + <name>.json")
    p.add_argument(
        "--ship", action="store_true", help="write into the package's models/ as the default"
    )
    p.add_argument("--name", help="model name (default: [export] name of the run's config)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best")
    p.add_argument("--description", help="one line (default: [export] description of the run)")
    args = p.parse_args(argv)
    if not (args.out or args.ship):
        p.error("give --out DIR or --ship")
    path = export_run(
        args.run_dir,
        args.out,
        name=args.name,
        ship=args.ship,
        checkpoint=args.checkpoint,
        description=args.description,
    )
    cfg = json.loads(path.read_text())
    print(
        f"wrote {path} (sha256 {cfg['sha256'][:16]}..., default={cfg['default']})", file=sys.stdout
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
