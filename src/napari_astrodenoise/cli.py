"""The ``astrodenoise`` command: denoise, starmask, seams and models; FITS, XISF and TIFF in.

Inputs are read by :func:`~napari_astrodenoise.image_io.read_image` (FITS, XISF or astro
TIFF). ``denoise`` writes the input's format unless ``--format`` (or the ``-o`` name) says
another; ``starmask`` and ``seams`` write FITS. Every output goes through the same writers
as the napari plugin (header and WCS kept, provenance written, atomic), and no existing
file is replaced without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from napari_astrodenoise.core.options import DENOISE, TILING, Option

#: output formats of ``denoise --format``, as :data:`napari_astrodenoise.image_io.FORMATS`
#: (named here so that ``--help`` loads no astropy)
FORMATS = ("fits", "xisf", "tiff")
EXIT_BAD_INPUT = 2
#: exit status after Ctrl-C (128 + SIGINT), as shells report it
EXIT_CANCELLED = 130


class CliError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="astrodenoise",
        description="Denoise linear astronomical FITS, XISF and TIFF images without "
        "inventing detail.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "denoise",
        help="denoise FITS, XISF or TIFF images (or a bundled sample)",
        description="Denoise FITS (.fits .fit .fts, also .gz and .fz), XISF (.xisf) or TIFF "
        "(.tif .tiff, 16-bit integer or 32-bit float) images. The output is written in the "
        "input's format unless --format or the -o name says another: fits, xisf (Float32) "
        "or tiff (float32, or 16-bit with --tiff-bits 16).",
    )
    _add_inputs(p, sample=True)
    _add_outputs(p, suffix="IN_denoised.EXT, EXT of the output format")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="output format: fits, xisf or tiff (default: the -o name's, else the input's)",
    )
    p.add_argument("--compress", action="store_true", help="XISF output: zlib with byte shuffling")
    p.add_argument(
        "--tiff-bits",
        type=int,
        choices=(32, 16),
        default=32,
        help="TIFF output: 32 (float, default) or 16 (integers, scaling recorded)",
    )
    p.add_argument("--model", default="default", help="shipped model name or model file")
    _add_options(p, DENOISE)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    p.add_argument("--batch-size", type=int, default=None, help="tiles per network call")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("starmask", help="write the soft star mask of images as FITS")
    _add_inputs(p)
    _add_outputs(p)
    p.add_argument("--threshold", type=float, default=5.0, help="noise sigmas (default 5)")
    p.add_argument("--dilation", type=int, default=2, help="pixels (default 2)")
    p.add_argument("--feather", type=float, default=1.5, help="Gaussian sigma, px (default 1.5)")

    p = sub.add_parser("seams", help="measure tile seams; optionally write the difference map")
    _add_inputs(p)
    p.add_argument("-o", "--output", type=Path, help="FITS file for the seam difference map")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--model", default="default", help="shipped model name or model file")
    _add_options(p, TILING)
    p.add_argument("--reference", choices=("shifted", "whole"), default="shifted")
    p.add_argument("--device", default="auto")

    p = sub.add_parser(
        "finetune",
        help="teach the model your camera's real noise from your own sub-exposures",
        description="Fine-tune the shipped model on two or more raw sub-exposures of one "
        "target (Noise2Noise: each frame learns from another), or on one frame of white "
        "noise (--single). The new model goes to your user model directory; use it with "
        "'astrodenoise denoise IN --model NAME'.",
    )
    p.add_argument(
        "frames", nargs="+", type=Path, metavar="FRAME", help="FITS, XISF or TIFF sub-exposures"
    )
    p.add_argument("--name", required=True, help="name of the new model")
    p.add_argument(
        "--minutes", type=float, default=10.0, help="time budget in minutes (default 10)"
    )
    pairing = p.add_mutually_exclusive_group()
    pairing.add_argument(
        "--half-stacks",
        action="store_true",
        help="one pair: the mean of the odd frames against the mean of the even ones",
    )
    pairing.add_argument(
        "--single",
        action="store_true",
        help="one frame, no pair (refused when its noise is spatially correlated)",
    )
    p.add_argument("--base", default="default", help="model to start from (default: shipped)")
    p.add_argument("--overwrite", action="store_true", help="replace a user model of that name")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    sub.add_parser("models", help="list the shipped and your own models")
    return parser


def _add_inputs(p: argparse.ArgumentParser, *, sample: bool = False) -> None:
    p.add_argument(
        "inputs",
        nargs="*" if sample else "+",
        type=Path,
        metavar="IN",
        help="FITS, XISF or TIFF files",
    )
    p.add_argument("--hdu", type=int, default=None, help="HDU index (default: first image HDU)")
    if sample:
        p.add_argument(
            "--sample",
            choices=("m13", "synthetic"),
            help="denoise a bundled sample instead of files (m13: real frame from astropy)",
        )


def _add_outputs(p: argparse.ArgumentParser, *, suffix: str = "IN_SUFFIX.fits") -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("-o", "--output", type=Path, help="output file (one input only)")
    group.add_argument("--output-dir", type=Path, help=f"folder for outputs, named {suffix}")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def _add_options(p: argparse.ArgumentParser, group: Sequence[Option]) -> None:
    """One flag per option of the group, checked as it is parsed (before any work)."""
    for o in group:
        extra = {"choices": o.choices} if o.choices else {"metavar": o.unit.upper() or None}
        p.add_argument(o.flag, type=_parse(o), default=o.default, help=o.describe(), **extra)


def _parse(o: Option) -> Any:
    """argparse type of an option: the text as the option's kind, checked against its range."""

    def parse(text: str) -> Any:
        try:
            return o.check(o.kind(text))
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = o.kind.__name__  # argparse names the type in its messages
    return parse


def _sources(args: argparse.Namespace) -> Iterator[tuple[str, Any]]:
    """(label, FitsImage) for each input: a file's chosen HDU, or the bundled sample."""
    from napari_astrodenoise.fits_io import ImageReadError
    from napari_astrodenoise.image_io import read_image

    if getattr(args, "sample", None):
        if args.inputs:
            msg = "give input files or --sample, not both"
            raise CliError(msg)
        from napari_astrodenoise._sample_data import sample_image

        yield args.sample, sample_image(args.sample)
        return
    if not args.inputs:
        msg = "no input files given (or use --sample m13)"
        raise CliError(msg)
    for path in args.inputs:
        if not path.is_file():
            msg = f"{path}: no such file"
            raise CliError(msg)
        try:
            images = read_image(path)
        except ImageReadError as err:
            raise CliError(str(err)) from None
        if args.hdu is None:
            yield str(path), images[0]
            continue
        chosen = [im for im in images if im.hdu_index == args.hdu]
        if not chosen:
            found = [im.hdu_index for im in images]
            msg = f"{path}: HDU {args.hdu} is not an image HDU with data (image HDUs: {found})"
            raise CliError(msg)
        yield str(path), chosen[0]


def _output_paths(
    args: argparse.Namespace,
    labels: Sequence[str],
    suffix: str,
    formats: Sequence[str] | None = None,
) -> list[Path]:
    """Output files: ``-o``, or ``IN_SUFFIX.EXT`` in ``--output-dir`` (EXT of each format)."""
    from napari_astrodenoise.image_io import SUFFIXES

    if args.output is not None:
        if len(labels) != 1:
            msg = f"-o takes one input, got {len(labels)}: use --output-dir for several"
            raise CliError(msg)
        outs = [args.output]
    else:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        exts = [SUFFIXES[f][0] for f in formats] if formats else [".fits"] * len(labels)
        outs = [
            args.output_dir / f"{_stem(label)}_{suffix}{ext}"
            for label, ext in zip(labels, exts, strict=True)
        ]
        if len(set(outs)) != len(outs):
            msg = "two inputs share a name; write them in separate calls or folders"
            raise CliError(msg)
    for out in outs:
        if out.exists() and not args.overwrite:
            msg = f"{out} exists; pass --overwrite to replace it"
            raise CliError(msg)
    return outs


def _stem(label: str) -> str:
    name = Path(label).name
    for ext in (".fz", ".gz"):
        name = name.removesuffix(ext)
    return Path(name).stem


def _channel_axis(image: Any) -> int | None:
    return None if image.data.ndim == 2 else 0


def _output_formats(args: argparse.Namespace, images: Sequence[Any]) -> list[str]:
    """The format of each output: ``--format``, else the ``-o`` name's, else the input's."""
    from napari_astrodenoise.image_io import format_of_name

    named = format_of_name(args.output) if args.output is not None else None
    if args.format and named and named != args.format:
        msg = f"-o {args.output} names a {named} file but --format says {args.format}"
        raise CliError(msg)
    formats = [args.format or named or image.file_format for image in images]
    for image, chosen in zip(images, formats, strict=True):
        if chosen != "fits" and image.kind == "stack":
            msg = (
                f"{image.name} is a stack of {image.data.shape[0]} planes; {chosen} holds mono "
                "or RGB images: write it as FITS (--format fits)"
            )
            raise CliError(msg)
    return formats


def _cmd_denoise(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from napari_astrodenoise.core.pipeline import iter_denoise
    from napari_astrodenoise.core.weights import ModelNotFoundError, load_model
    from napari_astrodenoise.image_io import write_image

    sources = list(_sources(args))
    formats = _output_formats(args, [image for _, image in sources])
    outs = _output_paths(args, [label for label, _ in sources], "denoised", formats)
    try:
        loaded = load_model(args.model, device=args.device)  # once for all inputs
    except (ModelNotFoundError, ValueError) as err:
        raise CliError(str(err)) from None
    for (label, image), out, chosen in zip(sources, outs, formats, strict=True):
        gen = iter_denoise(
            image.data,
            model=loaded,
            device=args.device,
            channel_axis=_channel_axis(image),
            bayer=image.bayer_pattern is not None,
            batch_size=args.batch_size,
            **{o.name: getattr(args, o.name) for o in DENOISE},
        )
        result = _drain(gen, desc=Path(label).name, quiet=args.quiet, tqdm=tqdm)
        meta = result.provenance()
        write_image(
            out,
            result.output(),
            file_format=chosen,
            header=image.header,
            channel_axis=_channel_axis(image),
            provenance=meta["provenance"],
            history=[*meta["history"], f"input: {label}"],
            format_info=image.format_info,
            compress=args.compress,
            bits=args.tiff_bits,
            overwrite=args.overwrite,
        )
        print(f"{label} -> {out}")


def _drain(gen: Any, *, desc: str, quiet: bool, tqdm: Any) -> Any:
    """Run a progress generator under a tqdm bar on stderr; return its result."""
    from napari_astrodenoise.core.progress import drain

    with tqdm(desc=desc, unit="tile", disable=quiet, file=sys.stderr) as bar:

        def show(item: tuple[int, int]) -> None:
            bar.total, bar.n = item[1], item[0]
            bar.refresh()

        return drain(gen, on_progress=show)


def _cmd_starmask(args: argparse.Namespace) -> None:
    from napari_astrodenoise.core.starmask import star_mask
    from napari_astrodenoise.fits_io import write_fits

    sources = list(_sources(args))
    outs = _output_paths(args, [label for label, _ in sources], "starmask")
    for (label, image), out in zip(sources, outs, strict=True):
        mask = star_mask(
            image.data,
            channel_axis=_channel_axis(image),
            threshold=args.threshold,
            dilation=args.dilation,
            feather=args.feather,
        )
        header = image.header.copy()
        for key in ("NAXIS3", "BAYERPAT"):
            header.remove(key, ignore_missing=True)
        history = [
            f"napari-astrodenoise soft star mask of {label}: threshold {args.threshold:g} sigma, "
            f"dilation {args.dilation} px, feather {args.feather:g} px"
        ]
        write_fits(out, mask, header=header, history=history, overwrite=args.overwrite)
        print(f"{label} -> {out}")


def _cmd_seams(args: argparse.Namespace) -> None:
    from napari_astrodenoise.core.pipeline import seam_map
    from napari_astrodenoise.core.weights import ModelNotFoundError, load_model
    from napari_astrodenoise.fits_io import write_fits

    sources = list(_sources(args))
    if args.output is not None and len(sources) != 1:
        msg = "-o takes one input"
        raise CliError(msg)
    if args.output is not None and args.output.exists() and not args.overwrite:
        msg = f"{args.output} exists; pass --overwrite to replace it"
        raise CliError(msg)
    try:
        loaded = load_model(args.model, device=args.device)
    except (ModelNotFoundError, ValueError) as err:
        raise CliError(str(err)) from None
    print(f"{'input':<40} {'blend':<9} {'overlap':>7} {'seam/sigma':>10}")
    for label, image in sources:
        report = seam_map(
            image.data,
            model=loaded,
            channel_axis=_channel_axis(image),
            bayer=image.bayer_pattern is not None,
            reference=args.reference,
            **{o.name: getattr(args, o.name) for o in TILING},
        )
        print(
            f"{Path(label).name:<40} {args.blend:<9} {args.overlap:>7.2f} "
            f"{report.seam_sigma:>10.4f}"
        )
        if args.output is not None:
            history = [
                f"napari-astrodenoise tile-seam difference map of {label} ({args.reference} "
                f"reference): tile {args.tile_size}, overlap {args.overlap:g}, blend "
                f"{args.blend}; seam RMS = {report.seam_sigma:.4g} noise sigma"
            ]
            write_fits(
                args.output,
                report.diff,
                header=image.header,
                channel_axis=_channel_axis(image),
                history=history,
                overwrite=args.overwrite,
            )


def _cmd_finetune(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from napari_astrodenoise.finetune import iter_finetune

    for path in args.frames:
        if not path.is_file():
            msg = f"{path}: no such file"
            raise CliError(msg)
    if args.single and len(args.frames) != 1:
        msg = f"--single takes one frame, got {len(args.frames)}"
        raise CliError(msg)
    gen = iter_finetune(
        [str(p) for p in args.frames],
        base=args.base,
        name=args.name,
        minutes=args.minutes,
        pairs="half-stacks" if args.half_stacks else "all",
        single=args.single,
        overwrite=args.overwrite,
        device=args.device,
        seed=args.seed,
    )
    from napari_astrodenoise.core.progress import drain

    try:
        first = next(gen)  # the input is checked here, before any bar is drawn
        with tqdm(total=100, unit="%", disable=args.quiet, file=sys.stderr) as bar:

            def show(event: Any) -> None:
                bar.set_description(event.stage)
                bar.n = round(100 * event.fraction)
                if event.loss is not None:
                    bar.set_postfix(loss=f"{event.loss:.3f}", val=_fmt(event.best_val_loss))
                bar.refresh()

            show(first)
            result = drain(gen, on_progress=show)
    finally:
        gen.close()  # an interrupted run writes nothing
    print(
        f"{result.name} -> {result.path} (validation loss {result.val_loss_before:.4f} -> "
        f"{result.val_loss_after:.4f}, {result.steps} steps, {result.wall_time_s:.0f} s)"
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _cmd_models(_args: argparse.Namespace) -> None:
    import json

    from napari_astrodenoise.core.weights import available_models

    entries = available_models()
    if not entries:
        print("no trained model is installed")
    for entry in entries:
        cfg = json.loads(entry.path.read_text())
        arch = cfg["architecture"]
        flag = " (default)" if entry.default else ""
        base = cfg.get("finetune", {}).get("base", {}).get("name")
        origin = entry.origin + (f", fine-tuned from {base}" if base else "")
        weights = entry.path.with_name(cfg["weights_file"])
        print(
            f"{entry.name}{flag} [{origin}]: ResUNet width {arch['width']} depth "
            f"{arch['depth']}, sha256 {cfg['sha256'][:16]}, {weights}"
        )


COMMANDS = {
    "denoise": _cmd_denoise,
    "starmask": _cmd_starmask,
    "seams": _cmd_seams,
    "finetune": _cmd_finetune,
    "models": _cmd_models,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``astrodenoise`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except (CliError, ValueError, FileExistsError) as err:
        print(f"astrodenoise {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"astrodenoise {args.command}: cancelled; nothing written", file=sys.stderr)
        return EXIT_CANCELLED
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
