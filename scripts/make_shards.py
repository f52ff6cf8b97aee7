"""Write an image folder (class subfolders become labels) into WebDataset tar shards, e.g. the
CIFAR-10 test split for the shard tests and benchmarks:

    python scripts/make_shards.py ../shared/data/cifar10/test shards --per-shard 1000
    vizneuron mine default --layers layer3 --data 'shards/shard-{000000..000009}.tar' ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vizneuron.sources import write_shards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("out")
    parser.add_argument("--per-shard", type=int, default=1000)
    parser.add_argument("--prefix", default="shard")
    args = parser.parse_args()
    shards = write_shards(args.folder, args.out, args.per_shard, args.prefix)
    print(f"wrote {len(shards)} shards to {args.out}: {shards[0].name} .. {shards[-1].name}")


if __name__ == "__main__":
    main()
