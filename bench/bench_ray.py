"""Mining on Ray vs in this process, at equal CPU: images per second over the 10,000 CIFAR-10 test
images (every channel of layer2 and layer3 of the bundled model, k 16, batches of 64), and the
driver's peak memory as the dataset grows.

Rows, interleaved over rounds in one process (one local Ray, started once, as a user's running
cluster would be): local (torch on all cores); Ray with 1 actor holding all cores; Ray with one
actor per core. Every Ray run includes starting its actors and loading the model in each. Each
Ray index is checked equal to the local one. The driver's memory is sampled (RSS) during Ray runs
on the first quarter of the images and on all of them: flat means it does not grow with the data.

    python bench/bench_ray.py [--rounds 2] [--gpus-per-actor 1]   # the latter on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import torch

from common import SHARED, table
from vizneuron import load_model, mine
from vizneuron.distributed import RayEngine, connect

ROOT = Path(__file__).resolve().parents[1]
UNITS, K, BATCH = "layer2,layer3", 16, 64


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class PeakMemory:
    """The highest RSS of this process while the block runs, sampled every 20 ms."""

    def __enter__(self) -> "PeakMemory":
        self.before, self.peak, self._stop = rss_mib(), rss_mib(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mib())

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()


def run(data: str, index: Path, engine) -> tuple[float, float, float]:
    """(seconds for the whole run, seconds streaming, driver peak RSS growth in MiB)."""
    model = load_model("default")
    with PeakMemory() as memory:
        started = time.perf_counter()
        result = mine(model, UNITS, data, k=K, batch_size=BATCH, index=index, engine=engine, progress=False)
        seconds = time.perf_counter() - started
    stream = result.meta["timing"]["stream_seconds"]
    result.db.close()
    return seconds, stream, memory.peak - memory.before


def same_results(a: Path, b: Path) -> bool:
    rows = []
    for path in (a, b):
        db = sqlite3.connect(path)
        rows.append(db.execute("SELECT unit, side, rank, image, value, y, x, heatmap FROM examples ORDER BY 1, 2, 3")
                    .fetchall())
        db.close()
    return rows[0] == rows[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--gpus-per-actor", type=float, default=0.0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "ray_results.json"))
    args = parser.parse_args()
    data = SHARED / "data" / "cifar10" / "test"
    images = sum(1 for _ in data.rglob("*.jpg"))
    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    connect(None)  # one local Ray with every core, started before the clock runs
    gpu = args.gpus_per_actor
    engines = {"local": "local",
               "Ray, 1 actor": RayEngine(actors=1, cpus_per_actor=cores, gpus_per_actor=gpu),
               f"Ray, {cores} actors": RayEngine(actors=cores, cpus_per_actor=1, gpus_per_actor=gpu)}
    timings: dict[str, list[tuple[float, float, float]]] = {name: [] for name in engines}
    identical = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for name, engine in engines.items():
                index = Path(tmp) / f"{round_}-{name}.sqlite"
                timings[name].append(run(str(data), index, engine))
                if name != "local":
                    identical[name] = same_results(Path(tmp) / f"{round_}-local.sqlite", index)
                print(name, round_, [round(v, 2) for v in timings[name][-1]], flush=True)
        quarter = Path(tmp) / "quarter.txt"
        quarter.write_text("\n".join(str(p) for p in sorted(data.rglob("*.jpg"))[: images // 4]) + "\n")
        ray_engine = engines[f"Ray, {cores} actors"]
        memory = {"2500 images": run(str(quarter), Path(tmp) / "q.sqlite", ray_engine)[2],
                  f"{images} images": run(str(data), Path(tmp) / "all.sqlite", ray_engine)[2]}
    best = {name: min(t[0] for t in runs) for name, runs in timings.items()}
    stream = {name: min(t[1] for t in runs) for name, runs in timings.items()}
    rows = [[name, f"{images / best[name]:.0f}", f"{best[name]:.1f}", f"{images / stream[name]:.0f}",
             f"{best[name] / best['local']:.2f}x", "-" if name == "local" else ("yes" if identical[name] else "NO")]
            for name in engines]
    print(table(["engine", "images/s (whole run)", "seconds", "images/s (streaming)", "time vs local",
                 "index == local"], rows))
    print(table(["driver peak RSS growth, Ray", *memory], [["MiB", *(f"{v:.0f}" for v in memory.values())]]))
    Path(args.out).write_text(json.dumps({"images": images, "cores": cores, "gpus_per_actor": gpu,
                                          "best_seconds": best, "stream_seconds": stream,
                                          "identical": identical, "driver_peak_rss_growth_mib": memory,
                                          "runs": timings}, indent=1) + "\n")


if __name__ == "__main__":
    main()
