"""The command line's checks before any work, and its faults, signals and warnings as one line."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


class PreflightError(ValueError):
    """An input or output that the command cannot use: said in one line before any work."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that clean-up code runs as for Ctrl-C."""


def check_inputs(paths: Sequence[Path]) -> None:
    """Every input exists, is a regular file and can be opened for reading.

    Raises
    ------
    PreflightError
        For the first input that fails, naming it and why.
    """
    for path in paths:
        if not path.exists():
            msg = f"{path}: no such file"
            raise PreflightError(msg)
        if not path.is_file():
            msg = f"{path}: not a regular file"
            raise PreflightError(msg)
        try:
            with open(path, "rb"):
                pass
        except OSError as err:
            msg = f"{path}: cannot be read ({os_reason(err, name=False)})"
            raise PreflightError(msg) from None


def check_outputs(paths: Sequence[Path], *, overwrite: bool) -> None:
    """Every output can be written: its folder exists and takes a file, the name is free.

    The folder is tried with a hidden file made and removed at once, so a read-only
    filesystem, a missing permission or a full directory table show now, not after the
    work.

    Raises
    ------
    PreflightError
        For the first output that cannot be written, naming it and why.
    """
    probed: set[Path] = set()
    for path in paths:
        if path.name.lower().endswith(".fz"):
            msg = f"{path}: writing tile-compressed .fz files is not supported; use .fits"
            raise PreflightError(msg)
        if path.is_dir():
            msg = f"{path} is a folder; give a file name"
            raise PreflightError(msg)
        folder = path.parent
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            msg = f"cannot write {path}: folder {folder} {what}"
            raise PreflightError(msg)
        if path.exists() and not overwrite:
            msg = f"{path} exists; pass --overwrite to replace it"
            raise PreflightError(msg)
        if folder not in probed:
            _probe_folder(folder, path)
            probed.add(folder)


def _probe_folder(folder: Path, path: Path) -> None:
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".astrodenoise-probe-")
    except OSError as err:
        msg = f"cannot write {path}: {os_reason(err, name=False)} (folder {folder})"
        raise PreflightError(msg) from None
    os.close(fd)
    os.unlink(probe)


def os_reason(err: OSError, *, name: bool = True) -> str:
    """An OS error in a few words: its text (``No space left on device``) and file name."""
    text = err.strerror or str(err) or type(err).__name__
    if name and err.filename is not None:
        return f"{os.fsdecode(err.filename)}: {text}"
    return text


def make_folder(folder: Path) -> None:
    """Create an output folder (and its parents); a failure becomes a PreflightError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        msg = f"cannot use {folder} as the output folder: a file of that name exists"
        raise PreflightError(msg) from None
    except OSError as err:
        msg = f"cannot create the output folder {folder}: {os_reason(err, name=False)}"
        raise PreflightError(msg) from None


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt).

    The ``finally`` clauses on the way out (the atomic writer's removal of its temporary
    file) then run for a ``kill`` as they do for Ctrl-C. Only the main thread can take
    signals; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(_signum: int, _frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def one_line_warnings(prefix: str) -> Iterator[None]:
    """While inside, each warning is printed on stderr as one line: ``PREFIX: warning: text``."""

    def show(message: Any, _category: Any, _filename: Any, _lineno: Any, *_: Any) -> None:
        text = " ".join(str(message).split())
        print(f"{prefix}: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
