"""The ``placement-search`` command line: a thin layer over the Python API.

User mistakes (bad files, names, values) print one ``error:`` line and exit with status 2,
without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .._version import __version__
from ..errors import UserError

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="placement-search",
        description="Search where a video network needs temporal convolutions (2D / 3D / separable).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from .space import add_parsers as add_space_parsers
    from .space import add_references_parser
    from .train import add_parsers as add_train_parsers

    add_space_parsers(sub)
    add_train_parsers(sub)
    add_references_parser(sub)

    from .analyze import add_parsers as add_analysis_parsers
    from .cache import add_parsers as add_cache_parsers
    from .export import add_parsers as add_export_parsers
    from .study import add_parsers
    from .table import add_parsers as add_table_parsers

    add_parsers(sub)
    add_export_parsers(sub)
    add_analysis_parsers(sub)
    add_table_parsers(sub)
    add_cache_parsers(sub)
    return parser


_DB_PROBLEMS = (
    (
        "malformed",
        "the database file is damaged ({text}); restore it from a backup, or save what is readable "
        "with `sqlite3 FILE .recover | sqlite3 recovered.db`",
    ),
    ("file is not a database", "this is not a database file ({text})"),
    (
        "readonly database",
        "the database cannot be written ({text}): make the file and its folder writable, or "
        "copy it somewhere writable; reading commands (status, pareto, report, export) work on it as it is",
    ),
    ("disk i/o error", "the database could not be read or written ({text}): check the disk"),
    ("database or disk is full", "the disk is full ({text}): free space; completed trials are kept"),
)


def _storage_error(e: BaseException, args: argparse.Namespace) -> str | None:
    """A clear message for a database that is damaged, read-only or on a failing disk (found
    anywhere in the exception's chain), naming the storage; None for anything else."""
    seen: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    for exc in seen:
        text = str(exc).splitlines()[0] if str(exc) else ""
        low = text.lower()
        for needle, message in _DB_PROBLEMS:
            if needle in low and type(exc).__module__.split(".")[0] in ("sqlite3", "sqlalchemy", "optuna"):
                where = getattr(args, "storage", None) or "the study's storage"
                inner = text.split(") ", 1)[-1] if text.startswith("(") else text
                return f"{where}: " + message.format(text=f"SQLite: {inner.split(' [SQL')[0]}")
    return None


def _plain_warning(message: Any, category: Any, filename: str, lineno: int, line: str | None = None) -> str:
    """Warnings on the command line: one plain line, no source file and line."""
    return f"placement-search: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    warnings.formatwarning = _plain_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int | None] = args.func
    try:
        return func(args) or 0
    except UserError as e:
        print(f"placement-search: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into `head`
        return 0
    except Exception as e:  # a damaged or read-only database: one clear line, not a traceback
        message = _storage_error(e, args)
        if message is None:
            raise
        print(f"placement-search: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("placement-search: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
