"""The ``astrodenoise`` command: denoise, starmask, seams and models; FITS, XISF and TIFF in.

Inputs are read by :func:`~napari_astrodenoise.image_io.read_image` (FITS, XISF or astro
TIFF). ``denoise`` writes the input's format unless ``--format`` (or the ``-o`` name) says
another; ``starmask`` and ``seams`` write FITS. Outputs are named ``IN_denoised.EXT`` and
``IN_starmask.fits`` and go beside each input unless ``-o`` or ``--output-dir`` says
otherwise. Every output goes through the same writers as the napari plugin (header and WCS
kept, provenance written, atomic), and no existing file is replaced without
``--overwrite``. Every argument is checked before any work: option values as they are
parsed, then the inputs read and the outputs found writable before the model loads.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari_astrodenoise import _preflight
from napari_astrodenoise.core.options import (
    DENOISE,
    NETWORK,
    OUTPUT,
    SAFEGUARDS,
    TILING,
    Option,
    option,
    show_value,
)

#: output formats of ``denoise --format``, as :data:`napari_astrodenoise.image_io.FORMATS`
#: (named here so that ``--help`` loads no astropy)
FORMATS = ("fits", "xisf", "tiff")
#: exit status of every one-line error: bad input, an unusable model, an OS error
EXIT_BAD_INPUT = 2
#: exit status of a batch in which some files failed (the others were written)
EXIT_SOME_FAILED = 1
#: exit status after Ctrl-C (128 + SIGINT), as shells report it
EXIT_CANCELLED = 130
#: exit status after SIGTERM (128 + 15)
EXIT_TERMINATED = 143


class CliError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


class _Help(argparse.RawDescriptionHelpFormatter):
    """Help laid out in at most 100 columns, an option's words beside its flag."""

    def __init__(self, prog: str) -> None:
        width = min(shutil.get_terminal_size().columns, 100) - 2
        super().__init__(prog, max_help_position=30, width=width)


def _command(
    sub: Any, name: str, *, summary: str, usage: str, example: str
) -> argparse.ArgumentParser:
    """A subcommand whose help starts with a one-line summary and ends with an example."""
    return sub.add_parser(
        name,
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        usage=f"%(prog)s {usage}".rstrip(),
        epilog=f"example:\n  {example}",
        formatter_class=_Help,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="astrodenoise",
        description="Denoise linear astronomical FITS, XISF and TIFF images without "
        "inventing detail.",
        epilog="example:\n  astrodenoise denoise m31.fits   (writes m31_denoised.fits beside it)",
        formatter_class=_Help,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _denoise_parser(sub)
    _starmask_parser(sub)
    _seams_parser(sub)
    _finetune_parser(sub)
    _command(
        sub,
        "models",
        summary="list the shipped models and your own",
        usage="",
        example="astrodenoise models",
    )
    return parser


def _denoise_parser(sub: Any) -> None:
    p = _command(
        sub,
        "denoise",
        summary="denoise images; each IN gives IN_denoised.EXT beside it, in its own format",
        usage="IN [IN ...] [options]",
        example="astrodenoise denoise m31_L.fits m31_R.xisf --strength 0.8\n"
        "  (writes m31_L_denoised.fits and m31_R_denoised.xisf beside the inputs)",
    )
    _add_inputs(p, sample=True)
    _add_outputs(p)
    p.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        metavar="FMT",
        help="fits, xisf or tiff (default: the input's)",
    )
    p.add_argument("--model", default="default", metavar="NAME", help=_MODEL_HELP)
    _add_options(p, OUTPUT, unset=True)
    p.add_argument("--device", default="auto", help=_DEVICE_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    advanced = p.add_argument_group("advanced (the defaults are safe)")
    advanced.add_argument(
        "--hdu", type=_whole(0), default=None, metavar="N", help="FITS HDU (default: first image)"
    )
    advanced.add_argument("--compress", action="store_true", help="XISF: zlib, byte shuffled")
    advanced.add_argument(
        "--tiff-bits",
        type=int,
        choices=(32, 16),
        default=32,
        help="TIFF: 32 float or 16 integer (default 32)",
    )
    _add_options(advanced, TILING + NETWORK + SAFEGUARDS, unset=True)
    advanced.add_argument(
        "--batch-size", type=_whole(1), default=None, metavar="N", help="tiles per network call"
    )
    advanced.add_argument(
        "--memory",
        type=_parse_bytes,
        default=None,
        metavar="SIZE",
        help="memory per frame (e.g. 2GB); beyond it, row blocks",
    )
    advanced.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="files on a local dask cluster of N processes",
    )
    advanced.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="files on the dask cluster at ADDRESS",
    )
    advanced.add_argument(
        "--resume", action="store_true", help="skip outputs done from the same input and settings"
    )


def _starmask_parser(sub: Any) -> None:
    p = _command(
        sub,
        "starmask",
        summary="write the soft star mask of images (1 on stars, 0 on sky) as FITS",
        usage="IN [IN ...] [options]",
        example="astrodenoise starmask m31.fits   (writes m31_starmask.fits beside it)",
    )
    _add_inputs(p)
    _add_outputs(p)
    p.add_argument(
        "--threshold",
        type=_above(0.0),
        default=5.0,
        metavar="SIGMA",
        help="noise sigmas (default 5)",
    )
    p.add_argument("--dilation", type=_whole(0), default=2, metavar="PX", help="px (default 2)")
    p.add_argument(
        "--feather",
        type=_above(0.0),
        default=1.5,
        metavar="PX",
        help="edge softness (default 1.5)",
    )
    p.add_argument("--hdu", type=_whole(0), default=None, metavar="N", help="FITS HDU")


def _seams_parser(sub: Any) -> None:
    p = _command(
        sub,
        "seams",
        summary="say whether tile seams would show, in noise sigmas; optionally map them",
        usage="IN [IN ...] [options]",
        example="astrodenoise seams m31.fits -o m31_seams.fits\n"
        "  (m31.fits: invisible: 0.02 sigma, far below the noise)",
    )
    _add_inputs(p)
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="FITS file for the seam map")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--model", default="default", metavar="NAME", help=_MODEL_HELP)
    p.add_argument("--device", default="auto", help=_DEVICE_HELP)
    advanced = p.add_argument_group("advanced (the defaults are safe)")
    _add_options(advanced, TILING)
    advanced.add_argument(
        "--reference",
        choices=("shifted", "whole"),
        default="shifted",
        metavar="REF",
        help="shifted tiles or whole image (default shifted)",
    )
    advanced.add_argument("--hdu", type=_whole(0), default=None, metavar="N", help="FITS HDU")


def _finetune_parser(sub: Any) -> None:
    p = _command(
        sub,
        "finetune",
        summary="teach the model your camera's noise from two or more raw sub-exposures",
        usage="FRAME [FRAME ...] --name NAME [options]",
        example="astrodenoise finetune lights/*.fits --name my-camera\n"
        "  astrodenoise denoise m31.fits --model my-camera",
    )
    p.add_argument(
        "frames", nargs="+", type=Path, metavar="FRAME", help="FITS, XISF or TIFF sub-exposures"
    )
    p.add_argument("--name", required=True, help="name of the new model")
    p.add_argument(
        "--minutes", type=_above(0.0), default=10.0, help="time budget in minutes (default 10)"
    )
    p.add_argument("--device", default="auto", help=_DEVICE_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    advanced = p.add_argument_group("advanced (the defaults are safe)")
    pairing = advanced.add_mutually_exclusive_group()
    pairing.add_argument(
        "--half-stacks",
        action="store_true",
        help="one pair: mean of odd frames against even ones",
    )
    pairing.add_argument(
        "--single",
        action="store_true",
        help="one frame of white noise, no pair",
    )
    advanced.add_argument(
        "--base", default="default", help="model to start from (default: shipped)"
    )
    advanced.add_argument("--overwrite", action="store_true", help="replace a model of that name")
    advanced.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _add_options(advanced, (option("precision"),))


_MODEL_HELP = "shipped or own model, or a model file"
_DEVICE_HELP = "auto, cpu, cuda or mps (default auto)"


def _add_inputs(p: argparse.ArgumentParser, *, sample: bool = False) -> None:
    p.add_argument(
        "inputs",
        nargs="*" if sample else "+",
        type=Path,
        metavar="IN",
        help="FITS, XISF or TIFF files",
    )
    if sample:
        p.add_argument(
            "--sample",
            choices=("m13", "synthetic"),
            help="a bundled sample instead of files",
        )


def _add_outputs(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="output file (one input only)"
    )
    group.add_argument(
        "--output-dir",
        type=Path,
        metavar="DIR",
        help="folder of the outputs (default: each IN's own)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def _add_options(p: Any, group: Sequence[Option], *, unset: bool = False) -> None:
    """One flag per option of the group, checked as it is parsed (before any work).

    A flag not given holds the option's default; with ``unset=True`` it holds None instead,
    so that the model's own options (a fine-tuned model's flux lock) apply where the command
    line says nothing. The help shows the table's default either way.
    """
    for o in group:
        listed = "{" + ",".join(map(str, o.choices)) + "}"
        if o.choices:
            fits = len(o.flag) + len(listed) < 26  # beside the help, not above it
            extra = {"choices": o.choices, "metavar": listed if fits else "MODE"}
        else:
            extra = {"metavar": o.unit.upper() or ("N" if o.kind is int else "X")}
        default = None if unset else o.default
        p.add_argument(o.flag, type=_parse(o), default=default, help=o.summary(), **extra)


def _whole(minimum: int) -> Any:
    """argparse type: a whole number >= ``minimum``."""

    def whole(text: str) -> int:
        value = int(text)
        if value < minimum:
            msg = f"must be a whole number >= {minimum}, got {text}"
            raise argparse.ArgumentTypeError(msg)
        return value

    whole.__name__ = "int"
    return whole


def _above(minimum: float) -> Any:
    """argparse type: a finite number > ``minimum``."""

    def above(text: str) -> float:
        value = float(text)
        if not (math.isfinite(value) and value > minimum):
            msg = f"must be a number > {minimum:g}, got {text}"
            raise argparse.ArgumentTypeError(msg)
        return value

    above.__name__ = "float"
    return above


def _parse(o: Option) -> Any:
    """argparse type of an option: the text as the option's kind, checked against its range."""

    def parse(text: str) -> Any:
        try:
            return o.check(o.kind(text))
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = o.kind.__name__  # argparse names the type in its messages
    return parse


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"must be a whole number of at least 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _parse_bytes(text: str) -> int:
    """argparse type of ``--memory``: ``2GB``, ``512MiB``, ``1.5e9`` (dask's own parser)."""
    from dask.utils import parse_bytes

    try:
        value = parse_bytes(text)
    except (ValueError, TypeError):
        value = -1
    if value <= 0:
        msg = f"not a memory size: {text!r} (say 2GB, 512MiB or a number of bytes)"
        raise argparse.ArgumentTypeError(msg)
    return int(value)


def _labels(args: argparse.Namespace) -> list[str]:
    """The inputs' labels; every input file is checked to be there and readable, not read."""
    if getattr(args, "sample", None):
        if args.inputs:
            msg = "give input files or --sample, not both"
            raise CliError(msg)
        return [args.sample]
    if not args.inputs:
        msg = "no input files given (or use --sample m13)"
        raise CliError(msg)
    _preflight.check_inputs(args.inputs)
    return [str(path) for path in args.inputs]


def _source(args: argparse.Namespace, label: str) -> Any:
    """The image of one input: the bundled sample, or the chosen HDU of a file."""
    from napari_astrodenoise.fits_io import ImageReadError
    from napari_astrodenoise.image_io import read_image

    if getattr(args, "sample", None):
        from napari_astrodenoise._sample_data import sample_image

        return sample_image(args.sample)
    path = Path(label)
    try:
        images = read_image(path, lazy=True)  # uncompressed FITS: headers now, data later
    except ImageReadError as err:
        raise CliError(str(err)) from None
    if args.hdu is None:
        return images[0]
    chosen = [im for im in images if im.hdu_index == args.hdu]
    if not chosen:
        found = [im.hdu_index for im in images]
        msg = f"{path}: HDU {args.hdu} is not an image HDU with data (image HDUs: {found})"
        raise CliError(msg)
    return chosen[0]


def _output_paths(
    args: argparse.Namespace,
    labels: Sequence[str],
    suffix: str,
    formats: Sequence[str] | None = None,
    *,
    check: bool = True,
) -> list[Path]:
    """The outputs, ``-o`` or ``IN_SUFFIX.EXT`` (EXT of each format) in ``--output-dir``,
    else beside each input (a bundled sample's in the current folder); checked to be
    writable (and free, without --overwrite) before any work (unless not ``check``: the
    caller checks those it will write)."""
    from napari_astrodenoise.image_io import SUFFIXES

    if args.output is not None:
        if len(labels) != 1:
            msg = f"-o takes one input, got {len(labels)}: use --output-dir for several"
            raise CliError(msg)
        outs = [args.output]
    else:
        if args.output_dir is not None:
            _preflight.make_folder(args.output_dir)
        exts = [SUFFIXES[f][0] for f in formats] if formats else [".fits"] * len(labels)
        outs = [
            _folder(args, label) / f"{_stem(label)}_{suffix}{ext}"
            for label, ext in zip(labels, exts, strict=True)
        ]
        if len(set(outs)) != len(outs):
            msg = "two inputs share a name; write them in separate calls or folders"
            raise CliError(msg)
    if check:
        _preflight.check_outputs(outs, overwrite=args.overwrite)
    return outs


def _folder(args: argparse.Namespace, label: str) -> Path:
    """Where an output goes without ``-o``: ``--output-dir``, else beside its input."""
    if args.output_dir is not None:
        return args.output_dir
    if getattr(args, "sample", None):
        return Path.cwd()
    return Path(label).parent


def _write(args: argparse.Namespace, out: Path, data: Any, **fields: Any) -> None:
    """``write_image`` (atomic) with an OS error said in one line; the output is counted."""
    from napari_astrodenoise.image_io import write_image

    try:
        write_image(out, data, overwrite=args.overwrite, **fields)
    except FileExistsError:
        raise
    except OSError as err:
        msg = f"cannot write {out}: {_preflight.os_reason(err, name=False)}; nothing written"
        raise CliError(msg) from None
    args.written.append(out)


def _load(args: argparse.Namespace) -> Any:
    """The model of ``--model``, loaded once; any fault of its files is one CliError."""
    from napari_astrodenoise.core.weights import ModelNotFoundError, load_model

    try:
        return load_model(args.model, device=args.device)
    except (ModelNotFoundError, ValueError) as err:
        raise CliError(str(err)) from None


def _stem(label: str) -> str:
    name = Path(label).name
    for ext in (".fz", ".gz"):
        name = name.removesuffix(ext)
    return Path(name).stem


def _channel_axis(image: Any) -> int | None:
    return None if image.data.ndim == 2 else 0


def _output_formats(args: argparse.Namespace, labels: Sequence[str]) -> list[str]:
    """The format of each output: ``--format``, else the ``-o`` name's, else the input's."""
    from napari_astrodenoise.image_io import detect_format, format_of_name

    named = format_of_name(args.output) if args.output is not None else None
    if args.format and named and named != args.format:
        msg = f"-o {args.output} names a {named} file but --format says {args.format}"
        raise CliError(msg)
    if args.format or named:
        return [args.format or named] * len(labels)
    if getattr(args, "sample", None):
        return ["fits"] * len(labels)
    return [detect_format(label) or "fits" for label in labels]  # bytes, then name


def _check_sources(
    args: argparse.Namespace, labels: Sequence[str], formats: Sequence[str] | None = None
) -> None:
    """Read each input once, one at a time, so that a bad one is refused before any work.

    Nothing is kept: an input is read again when its turn comes, so memory holds one frame.
    """
    from napari_astrodenoise.batch import check_format

    for label, chosen in zip(labels, formats or ["fits"] * len(labels), strict=True):
        image = _source(args, label)
        check_format(image, chosen)
        del image


def _cmd_denoise(args: argparse.Namespace) -> int:
    from napari_astrodenoise.batch import machine_memory

    labels = _labels(args)
    formats = _output_formats(args, labels)
    cluster = args.workers is not None or args.scheduler is not None
    if not cluster:  # a batch reports the files it cannot read, and goes on
        _check_sources(args, labels, formats)
    # with --resume the model says which outputs are done; without, it loads once the
    # outputs were found writable
    outs = _output_paths(args, labels, "denoised", formats, check=not args.resume)
    loaded = _load(args)
    if args.memory is None and args.workers:
        args.memory = machine_memory() // args.workers
    triples = zip(labels, outs, formats, strict=True)
    jobs = [_job(args, label, out, chosen) for label, out, chosen in triples]
    if args.resume:
        jobs = _resumed(args, jobs, loaded)
        _preflight.check_outputs([Path(job.output) for job in jobs], overwrite=args.overwrite)
    if cluster:
        return _denoise_on_cluster(args, jobs)
    from tqdm import tqdm

    from napari_astrodenoise.batch import denoise_file

    for job in jobs:
        with tqdm(
            desc=Path(job.input).name, unit="tile", disable=args.quiet, file=sys.stderr
        ) as bar:

            def show(done: int, total: int, bar: Any = bar) -> None:
                bar.total, bar.n = total, done
                bar.refresh()

            blocks = denoise_file(job, loaded, device=args.device, progress=show)
        args.written.append(Path(job.output))
        print(f"{job.input} -> {job.output}" + (f" ({blocks} row blocks)" if blocks else ""))
    return 0


def _job(args: argparse.Namespace, label: str, out: Path, chosen: str) -> Any:
    from napari_astrodenoise.batch import FileJob

    return FileJob(
        input=label,
        output=str(out),
        file_format=chosen,
        hdu=args.hdu,
        sample=bool(getattr(args, "sample", None)),
        options={
            o.name: getattr(args, o.name) for o in DENOISE if getattr(args, o.name) is not None
        },
        batch_size=args.batch_size,
        memory=args.memory,
        overwrite=args.overwrite,
        compress=args.compress,
        tiff_bits=args.tiff_bits,
    )


def _resumed(args: argparse.Namespace, jobs: list[Any], loaded: Any) -> list[Any]:
    """The jobs whose outputs are not done yet (the others are said)."""
    from napari_astrodenoise.batch import is_done
    from napari_astrodenoise.core.weights import own_options

    left = []
    for job in jobs:
        if is_done(job, loaded.sha256, own_options(loaded.config)):
            print(f"{job.input} -> {job.output} (done before: skipped)")
        else:
            left.append(job)
    return left


def _denoise_on_cluster(args: argparse.Namespace, jobs: list[Any]) -> int:
    """The jobs on a dask cluster: ``--scheduler``, or a LocalCluster of ``--workers``."""
    import contextlib
    import dataclasses
    import logging
    import os

    from tqdm import tqdm

    try:
        from distributed import Client, LocalCluster
    except ImportError:
        msg = (
            "--workers and --scheduler need dask.distributed: "
            "pip install 'napari-astrodenoise[cluster]'"
        )
        raise CliError(msg) from None
    from napari_astrodenoise.batch import denoise_files

    if not jobs:
        return 0
    # absolute paths: the workers may not start in this folder
    jobs = [
        dataclasses.replace(
            job,
            input=job.input if job.sample else str(Path(job.input).resolve()),
            output=str(Path(job.output).resolve()),
        )
        for job in jobs
    ]
    with contextlib.ExitStack() as stack:
        if args.scheduler is not None:
            client = stack.enter_context(Client(args.scheduler, timeout="20s"))
            threads = None
        else:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=args.workers,
                    threads_per_worker=1,
                    processes=True,
                    protocol="tcp",
                    host="127.0.0.1",
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
            )
            client = stack.enter_context(Client(cluster))
            threads = max(1, (os.cpu_count() or 1) // args.workers)
        bar = stack.enter_context(
            tqdm(total=len(jobs), desc="files", unit="file", disable=args.quiet, file=sys.stderr)
        )
        tile_bar = stack.enter_context(
            tqdm(desc="tiles", unit="tile", disable=args.quiet, file=sys.stderr, position=1)
        )

        def show_tiles(done: int, total: int) -> None:
            tile_bar.total, tile_bar.n = total, done
            tile_bar.refresh()

        def show(done: int, total: int, outcome: Any) -> None:
            bar.n = done
            bar.refresh()
            if outcome.status == "done":
                args.written.append(Path(outcome.job.output))
                bar.write(f"{outcome.job.input} -> {outcome.job.output}", file=sys.stdout)

        # a model file by its absolute path: the workers may start elsewhere
        model = Path(args.model)
        model = str(model.resolve()) if model.is_file() else args.model
        outcomes = denoise_files(
            client,
            jobs,
            model,
            device=args.device,
            threads=threads,
            progress=show,
            tiles=show_tiles,
        )
    failed = [o for o in outcomes if o.status == "failed"]
    if not failed:
        return 0
    lines = [f"  {o.job.input}: {o.reason}" for o in failed]
    print(
        f"astrodenoise denoise: {len(failed)} of {len(outcomes)} files failed:",
        *lines,
        sep="\n",
        file=sys.stderr,
    )
    return EXIT_SOME_FAILED


def _cmd_starmask(args: argparse.Namespace) -> None:
    from napari_astrodenoise.core.starmask import star_mask

    labels = _labels(args)
    _check_sources(args, labels)
    outs = _output_paths(args, labels, "starmask")
    for label, out in zip(labels, outs, strict=True):
        image = _source(args, label)
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
        _write(args, out, mask, header=header, history=history)
        print(f"{label} -> {out}")


def _cmd_seams(args: argparse.Namespace) -> None:
    from napari_astrodenoise.core.diagnostics import seam_verdict
    from napari_astrodenoise.core.pipeline import seam_map

    labels = _labels(args)
    if args.output is not None and len(labels) != 1:
        msg = "-o takes one input"
        raise CliError(msg)
    _check_sources(args, labels)
    if args.output is not None:
        _preflight.check_outputs([args.output], overwrite=args.overwrite)
    loaded = _load(args)
    for label in labels:
        image = _source(args, label)
        report = seam_map(
            image.data,
            model=loaded,
            channel_axis=_channel_axis(image),
            bayer=image.bayer_pattern is not None,
            reference=args.reference,
            **{o.name: getattr(args, o.name) for o in TILING},
        )
        print(f"{Path(label).name}: {seam_verdict(report.seam_sigma)}")
        if args.output is not None:
            history = [
                f"napari-astrodenoise tile-seam difference map of {label} ({args.reference} "
                f"reference): tile {args.tile_size}, overlap {args.overlap:g}, blend "
                f"{args.blend}; seam RMS = {report.seam_sigma:.4g} noise sigma"
            ]
            _write(
                args,
                args.output,
                report.diff,
                header=image.header,
                channel_axis=_channel_axis(image),
                history=history,
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
        precision=args.precision,
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
    check = result.provenance.get("flux_lock_check")
    if check:
        from napari_astrodenoise.finetune.lockcheck import verdict

        print(f"flux lock: {verdict(check)}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _cmd_models(_args: argparse.Namespace) -> None:
    from napari_astrodenoise.core.weights import available_models, own_options, read_config

    entries = available_models()
    if not entries:
        print("no trained model is installed")
    for entry in entries:
        try:
            cfg = read_config(entry.path)
        except ValueError as err:
            print(f"{entry.name} [{entry.origin}]: unusable: {err}")
            continue
        arch = cfg["architecture"]
        flag = " (default)" if entry.default else ""
        base = cfg.get("finetune", {}).get("base", {}).get("name")
        origin = entry.origin + (f", fine-tuned from {base}" if base else "")
        weights = entry.path.with_name(cfg["weights_file"])
        own = ", ".join(f"{option(k).flag} {show_value(v)}" for k, v in own_options(cfg).items())
        print(
            f"{entry.name}{flag} [{origin}]: ResUNet width {arch['width']} depth "
            f"{arch['depth']}, sha256 {cfg['sha256'][:16]}, {weights}"
            + (f"; runs with {own} unless told otherwise" if own else "")
        )


COMMANDS = {
    "denoise": _cmd_denoise,
    "starmask": _cmd_starmask,
    "seams": _cmd_seams,
    "finetune": _cmd_finetune,
    "models": _cmd_models,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``astrodenoise`` console script; returns the exit status.

    Every failure is one line on stderr: ``astrodenoise COMMAND: error: reason``, exit
    status 2; Ctrl-C exits 130 and SIGTERM 143, after the same clean-up (no partial or
    temporary file is left). Warnings are printed one per line.
    """
    args = _parser().parse_args(argv)
    args.written = []
    prefix = f"astrodenoise {args.command}"
    with _preflight.sigterm_as_interrupt(), _preflight.one_line_warnings(prefix):
        try:
            status = COMMANDS[args.command](args)
        except (CliError, ValueError, FileExistsError) as err:
            return _fail(prefix, " ".join(str(err).split()))
        except OSError as err:
            return _fail(prefix, _preflight.os_reason(err))
        except _preflight.Terminated:
            print(f"{prefix}: terminated; {_nothing_partial(args)}", file=sys.stderr)
            return EXIT_TERMINATED
        except KeyboardInterrupt:
            print(f"{prefix}: cancelled; {_nothing_partial(args)}", file=sys.stderr)
            return EXIT_CANCELLED
    return status or 0


def _fail(prefix: str, reason: str) -> int:
    print(f"{prefix}: error: {reason}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _nothing_partial(args: argparse.Namespace) -> str:
    """What an interrupted run leaves: nothing, or the outputs finished before it."""
    if not args.written:
        return "nothing written"
    done = ", ".join(str(p) for p in args.written)
    return f"only {done} written before, in full; nothing partial"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
