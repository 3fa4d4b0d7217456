"""Progress bars for long runs (training, table builds, exports, the clip cache), on stderr.

tqdm's bars as users know them (rate, elapsed, ETA). On a terminal a bar redraws in place; when
stderr is a file or a pipe, a line at most every 30 s, so logs stay readable. ``enabled=None``
shows a bar only on a terminal.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["progress_bar"]


def progress_bar(total: int | None, desc: str, unit: str, *, enabled: bool | None = None, **kw: Any) -> Any:
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    show = tty if enabled is None else enabled
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=not show,
        mininterval=0.5 if tty else 30.0,
        dynamic_ncols=True,
        leave=True,
        **kw,
    )
