"""Errors raised for user mistakes.

A :class:`UserError` is a problem with something the user handed us (a space file, a
placement, a command-line value). The command line prints its message and exits with a
non-zero status, without a traceback; library callers catch it like any ``ValueError``.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(ValueError):
    """Bad input from the user: the message names the file, field or value and what was expected."""
