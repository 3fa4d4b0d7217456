"""Ground truth: every placement of a space evaluated with several seeds at a proxy and a
reference budget (``placement-search table build``), stored as an ordinary study and exported
as a plain CSV that the benchmarks, the table evaluator and users read."""

from __future__ import annotations

from .table import COLUMNS, FORMAT, Row, Table, read_table, write_table

__all__ = ["COLUMNS", "FORMAT", "Row", "Table", "read_table", "write_table"]
