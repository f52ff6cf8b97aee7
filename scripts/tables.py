"""Write every generated table into the pages that show it, from the results files in bench/results/.

A page marks a table with `<!-- table: NAME -->` ... `<!-- /table -->`; this script replaces what lies
between with the table NAME renders from its results file (or, with no file yet, the command that
makes it), followed by a line saying what produced the figures. Nobody types a measured number.

    python scripts/tables.py           # rewrite the tables in README.md and docs/**/*.md
    python scripts/tables.py --check   # exit 1, naming each table that differs from its results
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MARKED = re.compile(r"(<!-- table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.DOTALL)


class Missing(Exception):
    """A table's results file (or part of it) is not there yet."""


def results(name: str, part: str = "all") -> tuple[object, dict]:
    """The results and provenance of `part` of bench/results/NAME.json."""
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise Missing(name)
    record = json.loads(path.read_text())
    if part not in record["parts"]:
        raise Missing(f"{name} ({part})")
    return record["parts"][part]["results"], record["parts"][part]["produced_by"]


def grid(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def produced(*sources: dict) -> str:
    """One line per distinct producer: command, versions, machine, date."""
    lines = []
    for source in sources:
        machine = source["machine"]
        where = f"{machine['cpus']} CPUs, {machine['torch_threads']} torch threads"
        if machine.get("gpu"):
            where = f"{machine['gpu']}, " + where
        command = " ".join(["python", source["script"], *source["arguments"]])
        line = (f"<sub>Produced by `{command}` · vizneuron {source['vizneuron']} · torch {source['torch']} · "
                f"{where} · {source['date'][:10]}</sub>")
        if line not in lines:
            lines.append(line)
    return "\n".join(lines)


def percent(value: float) -> str:
    return f"{value:.0%}".replace("%", " %")


# --- the tables: NAME -> markdown ---------------------------------------------------------------

def test_tiers() -> str:
    found, source = results("test_tiers")
    rows = [[name, tier["counts"].get("passed", 0), f"{tier['wall_s']:.0f}", tier["command"]]
            for name, tier in found.items()]
    return grid(["tier", "tests passed", "wall s", "command"], rows) + "\n\n" + produced(source)


TABLES: dict[str, tuple[Callable[[], str], str]] = {
    # name: (renderer, the command that makes its results)
    "test-tiers": (test_tiers, "python bench/test_tiers.py"),
}


def render(name: str) -> str:
    if name not in TABLES:
        raise SystemExit(f"unknown table {name!r}; known: {', '.join(sorted(TABLES))}")
    renderer, command = TABLES[name]
    try:
        return renderer() + "\n"
    except Missing as missing:
        return f"*Not measured with today's script yet ({missing} missing): run `{command}`.*\n"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is stale")
    args = parser.parse_args()
    stale = []
    for page in pages():
        text = page.read_text()
        new = MARKED.sub(lambda m: m.group(1) + render(m.group("name")) + m.group(4), text)
        if new != text:
            stale += [f"{page.relative_to(ROOT)}: {m.group('name')}" for m in MARKED.finditer(text)
                      if m.group("body") != render(m.group("name"))]
            if not args.check:
                page.write_text(new)
    if args.check and stale:
        print("tables that differ from their results (run python scripts/tables.py):\n  " + "\n  ".join(stale))
        return 1
    print(("stale: " if args.check else "rewritten: ") + (", ".join(stale) or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
