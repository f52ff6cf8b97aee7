"""Loading weights safely: local files via safetensors or `torch.load(weights_only=True)`, and
downloads wrapped so an offline user hears what failed and how to pass a local file instead."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..errors import VizneuronError
from ..files import current, readable


class WeightsUnavailable(VizneuronError, RuntimeError):
    """Pretrained weights could not be fetched or read."""


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors or a torch file, never unpickling arbitrary objects."""
    path = readable(path, "weights file")
    if not path.exists():
        raise WeightsUnavailable(f"weights file {path} not found")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as err:  # truncated, damaged, or not safetensors at all (safetensors' own error class)
            raise WeightsUnavailable(f"could not read {path} as safetensors: {err}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors come in many classes
        raise WeightsUnavailable(f"could not read {path} as plain tensors (weights_only=True): {err}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path,
                 strict: bool = True) -> None:
    """`module.load_state_dict(state)`, with weights of another architecture (missing, unexpected or
    misshapen tensors: torch's RuntimeError) reported as the user's file that does not fit."""
    try:
        module.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise WeightsUnavailable(f"the weights in {source} do not fit {type(module).__name__}: "
                                 f"{' '.join(line.strip() for line in first[:3])[:400]}") from None


def download_dir() -> Path:
    """Where downloaded weights are kept: the file access's `downloads` folder, else torch's hub."""
    folder = current().downloads
    return Path(folder) if folder is not None else Path(torch.hub.get_dir())


@contextmanager
def _hub_in_download_dir() -> Iterator[None]:
    """torch.hub's own downloads (torchvision's weights) into `download_dir()` for the block."""
    if current().downloads is None:
        yield
        return
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(download_dir()))
    try:
        yield
    finally:
        torch.hub.set_dir(previous)


@contextmanager
def download_errors(what: str, spec_hint: str) -> Iterator[None]:
    """Turn a failed download (no network, proxy, HTTP error) into one readable error; downloads
    go to `download_dir()`."""
    try:
        with _hub_in_download_dir():
            yield
    except WeightsUnavailable:
        raise
    except Exception as err:
        if not _looks_like_network(err):
            raise
        raise WeightsUnavailable(
            f"could not download the pretrained weights of {what} ({type(err).__name__}: {err}). "
            f"If you are offline, download the file elsewhere and pass it: {spec_hint}"
        ) from None


def _looks_like_network(err: BaseException) -> bool:
    names = {cls.__name__ for cls in type(err).__mro__}
    network = {"URLError", "HTTPError", "ConnectionError", "OSError", "TimeoutError", "LocalEntryNotFoundError",
               "HfHubHTTPError", "OfflineModeIsEnabled", "SSLError", "gaierror"}
    return bool(names & network) or "urlopen" in str(err) or "Connection" in str(err)
