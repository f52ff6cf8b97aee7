"""Mining on Ray vs in this process, at equal CPU: images per second over the 10,000 CIFAR-10 test
images (every channel of layer2 and layer3 of the bundled model, k 16, batches of 64), and the
driver's peak memory as the dataset grows.

Pairs at equal CPU, interleaved over rounds in one process (one local Ray, started once, as a
user's running cluster would be): local with 1 torch thread vs Ray with 1 actor of 1 CPU; local
with 2 threads vs Ray with 2 actors of 1 CPU each; and, for reference, Ray with 1 actor holding
both cores. Every Ray run includes starting its actors and loading the model in each. Each Ray
index is checked bit for bit against the local run whose torch thread count equals each actor's
(float32 sums may be split by thread, so only equal thread counts promise equal bits). The
driver's peak memory (max RSS) is read from fresh driver processes mining a quarter of the images
and all of them on the same cluster: flat means it does not grow with the data.

    python bench/bench_ray.py [--rounds 2] [--gpus-per-actor 1]   # the latter on a GPU machine
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import SHARED, save_results

from vizneuron import load_model, mine
from vizneuron.distributed import RayEngine, connect

UNITS, K, BATCH = "layer2,layer3", 16, 64


def run(data: str, index: Path, engine, threads: int) -> tuple[float, float]:
    """(seconds for the whole run, seconds streaming)."""
    torch.set_num_threads(threads)
    model = load_model("default")
    started = time.perf_counter()
    result = mine(model, UNITS, data, k=K, batch_size=BATCH, index=index, engine=engine, progress=False)
    seconds = time.perf_counter() - started
    stream = result.meta["timing"]["stream_seconds"]
    result.db.close()
    return seconds, stream


DRIVER = """
import resource, sys
from vizneuron import load_model, mine
from vizneuron.distributed import RayEngine
mine(load_model("default"), "layer2,layer3", sys.argv[1], k=16, batch_size=64, index=sys.argv[2], progress=False,
     engine=RayEngine(address=sys.argv[3], actors=2))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def driver_peak_mib(data: str, index: Path, address: str) -> float:
    """Max RSS of a fresh driver process mining `data` on the running cluster."""
    out = subprocess.run([sys.executable, "-c", DRIVER, data, str(index), address], check=True, capture_output=True,
                         text=True).stdout
    return float(out.split()[-1])


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
    args = parser.parse_args()
    data = SHARED / "data" / "cifar10" / "test"
    images = sum(1 for _ in data.rglob("*.jpg"))
    ray = connect(None)  # one local Ray with every core, started before the clock runs
    gpu = args.gpus_per_actor
    # name -> (engine, torch threads of this process, the local row at equal CPU it is timed against,
    # the local row at each actor's thread count it is checked against bit for bit)
    engines = {"local, 1 thread": ("local", 1, None, None),
               "Ray, 1 actor x 1 CPU": (RayEngine(actors=1, cpus_per_actor=1, gpus_per_actor=gpu), 1,
                                        "local, 1 thread", "local, 1 thread"),
               "local, 2 threads": ("local", 2, None, None),
               "Ray, 2 actors x 1 CPU": (RayEngine(actors=2, cpus_per_actor=1, gpus_per_actor=gpu), 2,
                                         "local, 2 threads", "local, 1 thread"),
               "Ray, 1 actor x 2 CPUs": (RayEngine(actors=1, cpus_per_actor=2, gpus_per_actor=gpu), 2,
                                         "local, 2 threads", "local, 2 threads")}
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in engines}
    identical = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for name, (engine, threads, _, same_threads) in engines.items():
                index = Path(tmp) / f"{round_}-{name}.sqlite"
                timings[name].append(run(str(data), index, engine, threads))
                if same_threads:
                    identical[name] = same_results(Path(tmp) / f"{round_}-{same_threads}.sqlite", index)
                print(name, round_, [round(v, 2) for v in timings[name][-1]], flush=True)
        quarter = Path(tmp) / "quarter.txt"
        quarter.write_text("\n".join(str(p) for p in sorted(data.rglob("*.jpg"))[: images // 4]) + "\n")
        address = ray.get_runtime_context().gcs_address
        memory = {f"{images // 4} images": driver_peak_mib(str(quarter), Path(tmp) / "q.sqlite", address),
                  f"{images} images": driver_peak_mib(str(data), Path(tmp) / "all.sqlite", address)}
    save_results("ray", {"images": images, "gpus_per_actor": gpu, "engines": {
        name: {"against": against, "runs": timings[name], "checked_against": same_threads,
               "bit_identical": identical.get(name)}
        for name, (_, _, against, same_threads) in engines.items()}, "driver_max_rss_mib": memory}, args)

if __name__ == "__main__":
    main()
