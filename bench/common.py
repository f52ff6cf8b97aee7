"""Helpers shared by the benchmark scripts: where the shared models live, table printing."""

from __future__ import annotations

import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"


def coral(name: str) -> str:
    """Spec of one of the Coral TFLite classifiers in ../shared."""
    path = SHARED / "models" / "coral" / f"{name}.tflite"
    if not path.exists():
        sys.exit(f"needs {path} (the ../shared folder beside the project)")
    return f"tflite:{path}"


def table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
