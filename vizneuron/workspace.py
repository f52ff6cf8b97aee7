"""The folders a server (the Streamlit app) may touch, and how user input gets into them.

A `Workspace` has read-only roots (image folders, indexes, SAEs, checkpoints the app was started
with) and one writable home (mined indexes, cached renders, per-session uploads). Every path a
user types goes through `resolve`, which follows `..` and symlinks and refuses anything outside,
so an app shared with others cannot be made to read or write elsewhere. Uploads are size-checked
and, for images, decoded before they are kept.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .edit import read_edit_file
from .errors import VizneuronError
from .files import FileAccess
from .imageio import ImageSkipped, read_rgb
from .models import ModelSpec
from .models.default import WEIGHTS_DIR
from .samples import SAMPLE_DIR
from .sources import HUB_PREFIX, HubSource, ImageSource, as_source, parse_hub_spec

MAX_IMAGE_BYTES = 16 * 2**20
MAX_MODEL_BYTES = 512 * 2**20
MODEL_SUFFIXES = (".tflite", ".pt", ".pth", ".th", ".safetensors")


class PathNotAllowed(VizneuronError):
    """A path outside the folders the app was started with."""


class UploadRejected(VizneuronError):
    """An upload that is too large, of the wrong kind, or not a readable image."""


@dataclass
class Workspace:
    roots: list[Path]  # readable
    home: Path  # readable and writable
    _sessions: dict[str, Path] = field(default_factory=dict, repr=False)  # session id -> its private folder
    _uploads: dict[tuple, Path] = field(default_factory=dict, repr=False)  # (session, upload, subfolder) -> file

    @classmethod
    def create(cls, roots: list[str | Path], home: str | Path) -> Workspace:
        home = Path(home).expanduser().resolve()
        home.mkdir(parents=True, exist_ok=True)
        return cls([Path(r).expanduser().resolve() for r in roots], home)

    @staticmethod
    def settings(argv: list[str], environ: Mapping[str, str]) -> tuple[tuple[str, ...], str]:
        """(roots, home) from `--root DIR` (repeatable) and `--home DIR`, else VIZNEURON_APP_ROOTS
        (os.pathsep-separated) and VIZNEURON_APP_HOME, else the current folder and `.vizneuron-app`."""
        parser = argparse.ArgumentParser(add_help=False)
        parser.add_argument("--root", action="append", default=None)
        parser.add_argument("--home", default=None)
        args, _ = parser.parse_known_args(argv)
        env_roots = [p for p in environ.get("VIZNEURON_APP_ROOTS", "").split(os.pathsep) if p]
        home = args.home or environ.get("VIZNEURON_APP_HOME") or ".vizneuron-app"
        return tuple(args.root or env_roots or ["."]), home

    @property
    def readable(self) -> list[Path]:
        """home, the roots, and the image sample and model weights bundled with vizneuron"""
        return [self.home, *self.roots, SAMPLE_DIR, WEIGHTS_DIR]

    def access(self) -> FileAccess:
        """The file access the app's jobs run under (`vizneuron.files.using`): every file a loader
        opens must be inside `readable` (symlinks resolved, relative paths against the first root,
        never the process's working folder), and downloaded weights go to home's `downloads`."""
        return WorkspaceAccess(self)

    @property
    def sae_folders(self) -> list[Path]:
        """Where the app looks for SAE files: `saes/` under home and under each root, then the roots."""
        return [self.home / "saes", *(root / "saes" for root in self.roots), *self.roots]

    def folder(self, name: str) -> Path:
        """A writable subfolder of home (`indexes`, `renders`, `saes`, `sessions`)."""
        path = self.home / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def resolve(self, text: str | Path, *, write: bool = False, must_exist: bool = True) -> Path:
        """The real path of `text` (relative to the first root), if the app may use it."""
        raw = str(text).strip()
        if not raw:
            raise PathNotAllowed("no path given")
        given = Path(raw).expanduser()
        path = (given if given.is_absolute() else (self.roots[0] if self.roots else self.home) / given).resolve()
        allowed = [self.home] if write else self.readable
        if not any(path.is_relative_to(root) for root in allowed):  # a root itself counts too
            where = ", ".join(str(r) for r in allowed)
            raise PathNotAllowed(f"{raw} is outside the folders this app may {'write' if write else 'read'} ({where})")
        if must_exist and not path.exists():
            raise FileNotFoundError(f"{raw} does not exist")
        return path

    def data_path(self, text: str | Path) -> Path:
        """The real path of a data reference the app may read: a folder, a list file, or the folder
        of `hf-dataset:PATH?...`."""
        raw = str(text).strip()
        return self.resolve(parse_hub_spec(raw)[0] if raw.startswith(HUB_PREFIX) else raw)

    def source(self, text: str | Path) -> ImageSource:
        """The images of a folder, list file or Hub dataset (`hf-dataset:PATH`) the app may read;
        files under it (symlinks, listed paths) that lead outside the app's folders are skipped with
        a note, never read."""
        raw = str(text).strip()
        if raw.startswith(HUB_PREFIX):
            return HubSource(self.data_path(raw), parse_hub_spec(raw)[1], within=self.readable)
        return as_source(self.resolve(raw), within=self.readable)

    def check_spec(self, spec: str | ModelSpec) -> ModelSpec:
        """A model spec with its files resolved inside the workspace; code-running sources refused."""
        spec = ModelSpec.parse(spec)
        if spec.runs_code:
            raise PathNotAllowed(f"model source {spec.source!r} runs arbitrary code and is off in the app; "
                                 "use the library or CLI for it")
        checked = spec.with_files(self.resolve)
        if checked.source == "edit":  # what the edit names is held to the same rules
            content, base, saes = read_edit_file(checked.name)
            self.check_spec(base)
            for file in saes.values():
                self.resolve(file)
            if content.get("weights"):  # a replaced head's weights, beside the edit file
                self.resolve(Path(checked.name).parent / content["weights"]["file"])
        return checked

    def model_files(self, depth: int = 3, limit: int = 200, scan: int = 20_000) -> list[Path]:
        """Model files (`MODEL_SUFFIXES`) in the roots, at most `depth` folders down, for the app's
        picker: at most `limit` files, and a root holding a large image set is given up on after
        `scan` entries rather than walked whole. Hidden folders are skipped."""
        found: list[Path] = []
        for root in self.roots:
            seen = 0
            for folder, subfolders, files in os.walk(root):
                level = len(Path(folder).relative_to(root).parts)
                subfolders[:] = sorted(d for d in subfolders if not d.startswith(".")) if level < depth else []
                seen += len(files) + len(subfolders)
                found += [Path(folder, f) for f in sorted(files) if Path(f).suffix.lower() in MODEL_SUFFIXES]
                if seen > scan or len(found) >= limit:
                    break
        return sorted(set(found))[:limit]

    def session_dir(self, session: str | None = None) -> Path:
        """A fresh private folder for one browser session's uploads (name unguessable)."""
        safe = re.sub(r"[^A-Za-z0-9_-]", "", session or "")[:40]
        path = self.folder("sessions") / f"{safe}-{secrets.token_hex(8)}"
        path.mkdir()
        return path

    def keep_upload(self, session: str, upload: str, name: str, data: bytes, kind: str = "image",
                    subfolder: str = "") -> Path:
        """`save_upload` into the session's private folder, once per upload (a rerun reuses the file)."""
        key = (session, upload, subfolder)
        if key not in self._uploads or not self._uploads[key].exists():
            if session not in self._sessions or not self._sessions[session].exists():
                self._sessions[session] = self.session_dir(session)
            folder = self._sessions[session].joinpath(*(re.sub(r"[^A-Za-z0-9 _-]", "", part).strip() or "upload"
                                                        for part in Path(subfolder).parts))
            folder.mkdir(parents=True, exist_ok=True)
            self._uploads[key] = self.save_upload(folder, name, data, kind)
        return self._uploads[key]

    def prune_sessions(self, max_age_s: float = 24 * 3600) -> None:
        """Delete session folders untouched for `max_age_s` (uploads are temporary)."""
        now = time.time()
        for path in self.folder("sessions").iterdir():
            if path.is_dir() and now - path.stat().st_mtime > max_age_s:
                shutil.rmtree(path, ignore_errors=True)

    def save_upload(self, folder: Path, name: str, data: bytes, kind: str = "image") -> Path:
        """Keep an uploaded file in a session folder, after checking its size and (images) content."""
        if not folder.is_relative_to(self.home):
            raise PathNotAllowed(f"{folder} is not a session folder of this app")
        base = Path(name).name  # never a path the browser chose
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(base).stem)[:80] or "upload"
        suffix = Path(base).suffix.lower()
        limit = MAX_IMAGE_BYTES if kind == "image" else MAX_MODEL_BYTES
        if len(data) > limit:
            raise UploadRejected(f"{base} is {len(data) / 2**20:.1f} MiB; the limit for {kind}s is "
                                 f"{limit // 2**20} MiB")
        if kind != "image" and suffix not in MODEL_SUFFIXES:
            raise UploadRejected(f"{base}: a model upload must be one of {', '.join(MODEL_SUFFIXES)}")
        path = folder / f"{stem}{suffix}"
        path.write_bytes(data)
        if kind == "image":
            try:
                read_rgb(path)  # decodes it, with the decompression-bomb guard
            except ImageSkipped as err:
                path.unlink()
                raise UploadRejected(f"{base}: {err}") from None
        return path


class WorkspaceAccess(FileAccess):
    """`FileAccess` inside a workspace: what `Workspace.resolve` allows, nothing else."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.downloads = workspace.home / "downloads"

    def read(self, path: Path, what: str) -> Path:
        try:
            return self.workspace.resolve(path, must_exist=False)
        except PathNotAllowed as err:
            raise PathNotAllowed(f"{what} {err}") from None
