"""Dataset examples: the real images that excite (and least excite) each unit, in a SQLite index."""

from .index import Example, ExampleIndex, IndexMismatch, UnitStats
from .run import merge, mine, mining_units
from .sources import ImageSource, as_source

__all__ = ["Example", "ExampleIndex", "ImageSource", "IndexMismatch", "UnitStats", "as_source", "merge", "mine",
           "mining_units"]
