"""The engines a job runs on: this process ("local", the default) or a Ray cluster ("ray").

A job (mining, activation extraction, rendering) cuts its work into blocks that do not depend on one
another and a picklable `job(block) -> result` callable. On Ray, a pool of actors (one model replica
each, one GPU each when asked) receives the job once and the blocks one by one; the driver gets each
block's result as soon as it is done, in any order, and commits it. The pool lives as long as the
job, so a job's second pass (mining's crops and heatmaps) reuses the warm actors.
Ray restarts a killed actor and retries its block; a killed driver loses only uncommitted blocks,
because every job records the blocks it finished and skips them when rerun. Ray is an optional extra
(`pip install 'vizneuron[ray]'`); nothing here imports it until a job asks for the Ray engine.
"""

from __future__ import annotations

import logging
import socket
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .choices import ENGINES
from .errors import VizneuronError

INSTALL_RAY = "pip install 'vizneuron[ray]'"


class EngineError(VizneuronError, RuntimeError):
    """The engine cannot run: Ray missing, the cluster unreachable, or a bad setting."""


@dataclass(frozen=True)
class RayEngine:
    """Where and how wide a job runs on Ray.

    `address`: a running cluster (`ray start --head` prints it; "auto" finds the local one); None
    joins the cluster this process already uses, or starts a private one on this machine.
    `actors`: model replicas (default: as many as the cluster's CPUs or GPUs fit).
    `gpus_per_actor` / `cpus_per_actor`: what each replica reserves; its torch threads follow its CPUs.
    Results equal a local run's bit for bit at the same torch thread count; at another, to float32
    rounding (some CPUs split sums by thread), so ranks may differ only among near-ties.
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

    def pool(self) -> ActorPool:
        """A pool of actors for the passes of one job (`with engine.pool() as pool: pool.run(...)`):
        made on first use, reused by every pass, gone when the block ends."""
        return ActorPool(self)

    def start(self):
        """Join (or start) the cluster now: a job calls this before it writes anything, so a
        cluster that cannot be reached leaves no half-made output behind."""
        return connect(self.address)

    def _actors(self, ray, blocks: int) -> int:
        """How many actors to start: `actors`, or as many as the cluster fits now, never more than
        it fits (an actor waiting for resources that never come would hold its blocks forever)."""
        resources = ray.cluster_resources()
        fit = int(resources.get("CPU", 0) // self.cpus_per_actor)
        if self.gpus_per_actor:
            fit = min(fit, int(resources.get("GPU", 0) // self.gpus_per_actor))
        if fit < 1:
            raise EngineError(f"the Ray cluster ({resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs) "
                              f"has no room for one actor of {self.cpus_per_actor:g} CPUs and "
                              f"{self.gpus_per_actor:g} GPUs")
        if self.actors and self.actors > fit:
            warnings.warn(f"the Ray cluster fits {fit} of the {self.actors} actors asked for; using {fit}",
                          stacklevel=3)
        return max(1, min(self.actors or fit, fit, blocks))


_ENGINES = dict(zip(ENGINES, (None, RayEngine())))


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
    return _ENGINES[engine]


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


class ActorPool:
    """Actors that each hold a job once and run the blocks they are handed, two at a time in flight
    so none waits between blocks. Ray restarts a killed actor and retries what it held."""

    def __init__(self, engine: RayEngine) -> None:
        self.engine, self.actors = engine, []

    def __enter__(self) -> ActorPool:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def close(self) -> None:
        if self.actors:
            ray = connect(self.engine.address)
            for actor in self.actors:
                ray.kill(actor)
            self.actors = []

    def run(self, job: Callable[[Any], Any], blocks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """(block number, job(blocks[number])) for every block, as actors finish them."""
        if not blocks:
            return
        engine = self.engine
        ray = engine.start()
        if not self.actors:
            worker = ray.remote(_RayWorker).options(num_cpus=engine.cpus_per_actor, num_gpus=engine.gpus_per_actor,
                                                    max_restarts=-1, max_task_retries=-1)
            count = engine._actors(ray, len(blocks))
            self.actors = [worker.remote(max(1, int(engine.cpus_per_actor)), engine.gpus_per_actor > 0)
                           for _ in range(count)]
        shipped = [ray.put(job)]  # in a list, so actors receive the reference and fetch the job once
        todo = list(range(len(blocks)))[::-1]
        running: dict[Any, tuple[int, Any]] = {}
        load = {i: 0 for i in range(len(self.actors))}
        try:
            while todo or running:
                for slot, actor in enumerate(self.actors):
                    while todo and load[slot] < 2:
                        number = todo.pop()
                        running[actor.run.remote(shipped, blocks[number])] = (number, slot)
                        load[slot] += 1
                (done,), _ = ray.wait(list(running), num_returns=1)
                number, slot = running.pop(done)
                load[slot] -= 1
                yield number, _result(ray, done)
        finally:
            for ref in running:
                ray.cancel(ref)


def _result(ray, ref) -> Any:
    """A finished block's result; an error raised in the job comes back as itself (one line for
    the user), not wrapped in Ray's remote traceback."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        if err.cause is not None:
            raise err.cause from None
        raise


class _RayWorker:
    """One actor: its torch threads follow its CPUs; each job arrives once (by reference) and keeps
    its model here, moved to the actor's GPU when it has one (jobs hold it as `job.model`)."""

    def __init__(self, threads: int, gpu: bool) -> None:
        torch.set_num_threads(threads)
        self.gpu, self.jobs = gpu, {}

    def run(self, shipped: list, block: Any) -> Any:
        key = shipped[0].hex()
        if key not in self.jobs:
            import ray  # optional extra: present wherever this actor runs

            self.jobs = {key: ray.get(shipped[0])}  # one job at a time: the last pass's is dropped
            if self.gpu and torch.cuda.is_available():
                self.jobs[key].model.to("cuda")
        return self.jobs[key](block)
