"""The one boundary between failures and people: which errors are the user's (a bad value, a file
that cannot be read or written, a full disk) and the one line each front end shows for them.

Errors meant for users are `VizneuronError`s (raised with what to change), plus the operating
system's and SQLite's errors about files and disks, and running out of memory. The CLI and the app
catch `expected()` around every action and print `user_message(err)`; anything else (a `RuntimeError`
inside torch, a plain `ValueError` from a library) is a bug and keeps its traceback (the CLI shows
every traceback with `--debug` or VIZNEURON_DEBUG=1).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import sys


class VizneuronError(ValueError):
    """A request vizneuron cannot carry out as given (a bad value, an unknown name, a file of the wrong
    kind), with what to change: the base of every error meant for users. A `ValueError`, so callers
    that catch those keep working."""


class UnknownNameError(VizneuronError, KeyError):
    """A name (unit, layer, concept) that is not there, with the closest ones."""


class MissingDependency(VizneuronError, ImportError):
    """An optional dependency a request needs is not installed; says which extra to install."""


#: errors that come from what was typed, uploaded or found on disk: one line, never a traceback
_EXPECTED: tuple[type[BaseException], ...] = (VizneuronError, OSError, sqlite3.Error, MemoryError)


def expected() -> tuple[type[BaseException], ...]:
    """The errors meant for users (`except expected() as err:`), with torch's out-of-memory error (a
    GPU's, a `RuntimeError`) once torch is imported: looked up when the error is caught, so the CLI
    does not import torch to print its help."""
    torch = sys.modules.get("torch")
    return (*_EXPECTED, torch.OutOfMemoryError) if torch is not None else _EXPECTED

_FREE_SPACE = "free some space or write somewhere else, then rerun the same command (it resumes)"


def warn_user(text: str) -> None:
    """A warning line on stderr, in the CLI's voice."""
    print(f"vizneuron: warning: {text}", file=sys.stderr)


def debug_requested(flag: bool = False) -> bool:
    """`--debug`, or VIZNEURON_DEBUG set to anything but empty/0: show tracebacks."""
    return flag or os.environ.get("VIZNEURON_DEBUG", "") not in ("", "0")


def user_message(err: BaseException) -> str | None:
    """One line saying what went wrong and what to do; None for errors that are bugs."""
    if not isinstance(err, expected()):
        return None
    return " ".join(_describe(err).split())


def _describe(err: BaseException) -> str:
    where = f" {err.filename}" if isinstance(err, OSError) and err.filename else ""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device writing{where}: {_FREE_SPACE}"
    if isinstance(err, OSError) and err.errno == errno.EROFS:
        return f"cannot write{where}: the storage is read-only; choose an output folder you can write"
    if isinstance(err, PermissionError):
        return f"permission denied:{where or ' ' + str(err)}"
    if isinstance(err, NotADirectoryError):
        return f"cannot use{where} as a folder: part of that path is a file"
    if isinstance(err, IsADirectoryError):
        return f"{where.strip() or 'the path'} is a folder, not a file"
    if isinstance(err, FileExistsError):
        return f"{where.strip() or 'the path'} already exists and is not a folder"
    if isinstance(err, FileNotFoundError) and err.filename:
        return f"{err.filename} not found"
    if isinstance(err, sqlite3.Error):
        text = str(err)
        if "full" in text:
            return f"the index's disk is full: {_FREE_SPACE}"
        if "readonly" in text or "read-only" in text:
            return "the index is on read-only storage or not writable: give --index a path you can write"
        if "not a database" in text or "malformed" in text:
            return "the file is not an SQLite database (or is damaged): give a vizneuron index"
        return f"index database error: {text}"
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        where = " on the GPU" if type(err).__name__ == "OutOfMemoryError" else ""
        return f"out of memory{where}: ask for fewer units, smaller images or a smaller batch"
    if isinstance(err, KeyError) and err.args:
        return str(err.args[0])
    return str(err) or type(err).__name__
