"""How long the `vizneuron` command takes to answer: `--help`, an argument error, and a render of the
bundled model reaching (and finishing) its first step. Process wall time, several runs each,
interleaved; the median and the range are printed.

    python bench/cli_start.py [--runs 5]

The render line runs `render default --units layer3:0 --steps 1` and waits for it to write its
gallery: an upper bound on the time to the first step of any render of that model.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import save_results

#: the installed console script, as users run it (else the module)
CLI = [shutil.which("vizneuron")] if shutil.which("vizneuron") else [sys.executable, "-m", "vizneuron.cli"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp()) / "gallery"
    cases = {
        "vizneuron --help": (CLI + ["--help"], 0),
        "vizneuron render default (argument error)": (CLI + ["render", "default"], 2),
        "vizneuron render default --units layer3:0 --steps 1": (
            CLI + ["render", "default", "--units", "layer3:0", "--steps", "1", "--quiet", "--out", str(out)], 0),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, (command, code) in cases.items():
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            times[name].append(time.perf_counter() - start)
            if done.returncode != code:
                sys.exit(f"{name}: exit {done.returncode}\n{done.stderr}")
    rows = [{"command": name, "median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "runs": t}
            for name, t in times.items()]
    print(rows)
    save_results("cli_start", rows, args)


if __name__ == "__main__":
    main()
