"""Dataset examples: the real images that excite (and least excite) each unit, in a SQLite index."""

from .index import Example, ExampleIndex, IndexMismatch, UnitStats, merge
from .run import index_path, mine, mining_units

__all__ = ["Example", "ExampleIndex", "IndexMismatch", "UnitStats", "index_path", "merge", "mine",
           "mining_units"]
