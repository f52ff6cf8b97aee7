"""The engines a job runs on: this process ("local", the default) or a Ray cluster ("ray").

A job (mining, activation extraction, rendering) cuts its work into blocks that do not depend on one
another and a picklable `job(block) -> result` callable. On Ray, the blocks become a Ray Dataset
streamed through a pool of actors, each holding one copy of the job (one model replica, one GPU when
asked); the driver gets each block's result as soon as it is done, in any order, and commits it.
Ray restarts a killed actor and retries its block; a killed driver loses only uncommitted blocks,
because every job records the blocks it finished and skips them when rerun. Ray is an optional extra
(`pip install 'vizneuron[ray]'`); nothing here imports it until a job asks for the Ray engine.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

INSTALL_RAY = "pip install 'vizneuron[ray]'"


class EngineError(RuntimeError):
    """The engine cannot run: Ray missing, the cluster unreachable, or a bad setting."""


@dataclass(frozen=True)
class RayEngine:
    """Where and how wide a job runs on Ray.

    `address`: a running cluster (`ray start --head` prints it; "auto" finds the local one); None
    joins the cluster this process already uses, or starts a private one on this machine.
    `actors`: model replicas (default: as many as the cluster's CPUs or GPUs fit).
    `gpus_per_actor` / `cpus_per_actor`: what each replica reserves; its torch threads follow its CPUs.
    `block_batches`: batches per block (the unit of scheduling, retries and resuming); None keeps the job's own.
    """

    address: str | None = None
    actors: int | None = None
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    block_batches: int | None = None

    def __post_init__(self) -> None:
        if self.actors is not None and self.actors < 1:
            raise EngineError(f"actors must be at least 1, not {self.actors}")
        if self.gpus_per_actor < 0 or self.cpus_per_actor <= 0:
            raise EngineError("gpus_per_actor must be >= 0 and cpus_per_actor > 0")
        if self.block_batches is not None and self.block_batches < 1:
            raise EngineError(f"block_batches must be at least 1, not {self.block_batches}")

    def run(self, job: Callable[[Any], Any], blocks: Sequence[Any], *, ordered: bool = False) -> Iterator[tuple[int, Any]]:
        """(block number, job(blocks[number])) for every block, as actors finish them (in block
        order when `ordered`). The job is shipped to each actor once; blocks travel as numbers."""
        if not blocks:
            return iter(())
        ray = self.start()
        from ray import data as ray_data  # optional extra: only a job run with engine="ray" needs it

        context = ray_data.DataContext.get_current()
        context.enable_progress_bars = False  # the job draws its own bar
        context.execution_options.preserve_order = ordered
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        actors = self.actors or self._fit(ray, len(blocks))
        dataset = ray_data.from_items([{"block": i} for i in range(len(blocks))], override_num_blocks=len(blocks))
        mapped = dataset.map_batches(
            _BlockWorker, fn_constructor_args=(job, list(blocks), max(1, int(self.cpus_per_actor)), self.gpus_per_actor > 0),
            batch_size=1,
            compute=ray_data.ActorPoolStrategy(size=min(actors, len(blocks))), num_cpus=self.cpus_per_actor,
            num_gpus=self.gpus_per_actor or None,
            batch_format="numpy")
        return ((int(row["block"]), row["result"].value) for row in mapped.iter_rows())

    def start(self):
        """Join (or start) the cluster now: a job calls this before it writes anything, so a
        cluster that cannot be reached leaves no half-made output behind."""
        return connect(self.address)

    def _fit(self, ray, blocks: int) -> int:
        resources = ray.cluster_resources()
        if self.gpus_per_actor:
            fit = int(resources.get("GPU", 0) // self.gpus_per_actor)
            if not fit:
                raise EngineError(f"the Ray cluster has no GPU for an actor asking {self.gpus_per_actor}; "
                                  "use gpus_per_actor=0 or a cluster with GPUs")
        else:
            fit = int(resources.get("CPU", 1) // self.cpus_per_actor)
        return max(1, min(fit, blocks))


ENGINES = {"local": None, "ray": RayEngine()}


class Job:
    """Base of a job's block callable: it travels to every actor once, without what it caches in
    `_underscored` attributes (an open stream, a file listing), which each actor rebuilds."""

    def __getstate__(self) -> dict:
        return {key: None if key.startswith("_") else value for key, value in self.__dict__.items()}


def as_engine(engine: str | RayEngine | None) -> RayEngine | None:
    """"local" (or None) -> None, "ray" -> RayEngine(), a RayEngine as is."""
    if engine is None or isinstance(engine, RayEngine):
        return engine
    if engine not in ENGINES:
        raise EngineError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    return ENGINES[engine]


def connect(address: str | None):
    """The `ray` module, joined to the cluster at `address` (None: the one already joined, else a
    private local one); a clear error when Ray is missing or the cluster cannot be reached."""
    try:
        import ray  # optional extra: only the Ray engine needs it
    except ImportError:
        raise EngineError(f"the Ray engine needs Ray, which is not installed: {INSTALL_RAY}") from None
    if ray.is_initialized():
        return ray
    if address and address != "auto":
        _reachable(address)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=True)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as err:
        where = f"at {address}" if address else "on this machine"
        raise EngineError(f"cannot reach a Ray cluster {where} ({str(err).splitlines()[0]}); check that "
                          "`ray start --head` runs there and the address (host:port) is right") from None
    return ray


def _reachable(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at HOST:PORT (Ray itself waits long)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise EngineError(f"Ray address {address!r} must look like HOST:PORT (e.g. 10.0.0.5:6379) or 'auto'")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise EngineError(f"cannot reach a Ray cluster at {address} ({err.strerror or err}); check that "
                          "`ray start --head` runs there and the address (host:port) is right") from None


@dataclass(frozen=True)
class _Opaque:
    """A block's result as one Python object, so Ray Data carries it as is (it would turn a bare
    tensor into an array)."""

    value: Any


class _BlockWorker:
    """One actor of the pool: holds the job (and so its model, `job.model`, moved to the actor's GPU
    when it has one) and runs the blocks it is handed."""

    def __init__(self, job: Callable[[Any], Any], blocks: list[Any], threads: int, gpu: bool) -> None:
        torch.set_num_threads(threads)
        if gpu and torch.cuda.is_available():
            job.model.to("cuda")
        self.job, self.blocks = job, blocks

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        numbers = batch["block"].tolist()
        results = np.empty(len(numbers), dtype=object)
        for i, number in enumerate(numbers):
            results[i] = _Opaque(self.job(self.blocks[number]))
        return {"block": np.asarray(numbers), "result": results}
