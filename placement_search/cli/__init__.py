"""The ``placement-search`` command line, one module per command group, on top of the Python API.

Only the console script (and ``python -m placement_search``) imports this package; nothing
below it imports from here.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
