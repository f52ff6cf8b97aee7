"""Where a job's files are reached. Every file the library opens for a job by a name it was given or
found (model files and weights, labels, edit files, SAE files, direction files) is passed through
`readable(path, what)` first, which asks the `FileAccess` in force; downloaded weights go where its
`downloads` says. The default opens paths as given. A server sets its own for a job with
`using(access)` (the app: its workspace's folders only, symlinks resolved, relative paths against
its roots, never the process's working folder), so a loader cannot open what the server did not
allow, whatever a spec, an edit file or a default file name says. The access in force is a context
variable: each thread (an app session's rerun) has its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path


class FileAccess:
    """The default: paths as given (`~` expanded), downloads into torch's own cache."""

    #: where weights downloaded for a job are kept; None: torch's default cache
    downloads: Path | None = None

    def read(self, path: Path, what: str) -> Path:
        """The path to open for `path` (a `what`, e.g. "SAE file"), or an error if it may not be read."""
        return path.expanduser()


DEFAULT = FileAccess()
_ACCESS: ContextVar[FileAccess | None] = ContextVar("vizneuron_file_access", default=None)


def current() -> FileAccess:
    """The access in force: the one `using` set for this thread's job, else `DEFAULT`."""
    return _ACCESS.get() or DEFAULT


def readable(path: str | Path, what: str = "file") -> Path:
    """The path a loader opens for `path`, as the access in force allows (or its error)."""
    return current().read(Path(path), what)


@contextmanager
def using(access: FileAccess) -> Iterator[FileAccess]:
    """Run the block's jobs with `access` deciding which files they may open."""
    token = _ACCESS.set(access)
    try:
        yield access
    finally:
        _ACCESS.reset(token)
