"""How long each test tier takes on this machine: the fast tier (`python -m pytest -m "not slow"`,
the loop for every change) and the full suite (`python -m pytest`, what CI runs), each as a whole
process, one after the other on a quiet machine. Writes bench/results/test_tiers.json with the
wall times, the outcome counts, the slowest tests and what produced them.

    python bench/test_tiers.py [--tiers fast,full,full-xdist]
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import time

from common import ROOT, save_results

#: tier -> pytest's arguments; `full-xdist` is the full suite over 2 pytest-xdist workers, to weigh
#: whether CI should use them
TIERS = {"fast": ["-m", "not slow"], "full": [], "full-xdist": ["-n", "2"]}
COUNTS = re.compile(r"(\d+) (passed|failed|skipped|deselected|errors?)")
DURATION = re.compile(r"^([\d.]+)s (call|setup|teardown)\s+(\S+)", re.M)


def run_tier(name: str) -> dict:
    """One tier as `python -m pytest` runs it, timed from start to exit, with its slowest tests."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0", *TIERS[name]]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    per_test: dict[str, float] = {}
    for seconds_text, _, test in DURATION.findall(done.stdout):
        per_test[test] = per_test.get(test, 0.0) + float(seconds_text)
    slowest = sorted(per_test.items(), key=lambda item: -item[1])[:10]
    return {"command": " ".join(["python", "-m", "pytest", *TIERS[name]]), "exit_code": done.returncode,
            "wall_s": round(seconds, 1), "summary": summary,
            "counts": {kind.rstrip("s") if kind.startswith("error") else kind: int(n)
                       for n, kind in COUNTS.findall(summary)},
            "slowest_s": [[test, round(total, 2)] for test, total in slowest]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiers", default="fast,full,full-xdist")
    args = parser.parse_args()
    tiers = args.tiers.split(",")
    if "full-xdist" in tiers and importlib.util.find_spec("xdist") is None:
        print("full-xdist left out: pip install pytest-xdist to time it")
        tiers.remove("full-xdist")
    for name in tiers:  # one part per tier: timing one tier keeps the others'
        found = run_tier(name)
        print(f"{name}: {found['wall_s']:.0f} s, {found['summary']}")
        save_results("test_tiers", found, args, part=name)
        # the next tier's table check reads the pages: bring them up to date with what was just written
        subprocess.run([sys.executable, str(ROOT / "scripts" / "tables.py")], check=True, capture_output=True)

if __name__ == "__main__":
    main()
