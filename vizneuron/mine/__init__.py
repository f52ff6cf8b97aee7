"""Dataset examples: the real images that excite (and least excite) each unit, in a SQLite index."""

from .index import Example, ExampleIndex, IndexMismatch, NotAnIndex, UnitStats, merge
from .run import index_path, mine, mine_sample, mining_units

__all__ = ["Example", "ExampleIndex", "IndexMismatch", "NotAnIndex", "UnitStats", "index_path", "merge", "mine",
           "mine_sample", "mining_units"]
