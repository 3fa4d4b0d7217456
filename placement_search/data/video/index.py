"""Finding the videos of a split: a folder per class or a list file; writing list files.

Video files and folders of extracted frames (mmaction2 rawframes) are both videos here;
nothing is opened or decoded (see :mod:`.decode`).
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ...errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


LAYOUT_HELP = """\
expected one of these layouts:
  a folder per class            a list file, one video per line
    train/                        train.txt:  abseiling/a1.mp4 abseiling   (path label: class name or index)
      abseiling/                              frames/a1 300 0             (mmaction2 rawframes: path num_frames label)
        a1.mp4                    train.csv:  path,label,start,end        (header; start/end in seconds, optional)
        a2.mp4                                x/a1.mp4,abseiling,0,10
      air_drumming/             relative paths are resolved against the list file's folder (or root)
        b7.mp4
  videos are .mp4 .avi .webm .mkv files, or folders of frames (a1/img_00001.jpg, img_00002.jpg, ...)"""


@dataclass(frozen=True)
class VideoItem:
    """One video: a file, or a folder of extracted frames.

    Attributes:
        path: absolute path of the file or frame folder.
        label: class index.
        start: first second to use (None: the beginning).
        end: second to stop at (None: the end).
    """

    path: str
    label: int
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class VideoList:
    """The videos of one split and the class names their labels index."""

    items: tuple[VideoItem, ...]
    class_names: tuple[str, ...]
    #: the folder or list file they were found in
    source: str

    def __len__(self) -> int:
        return len(self.items)


def scan_videos(
    source: str | Path, *, root: str | Path | None = None, class_names: Sequence[str] | None = None
) -> VideoList:
    """Find the videos of a split: a folder per class, or a list file (see :data:`LAYOUT_HELP`).

    Files are not opened here; unreadable ones are found (and skipped) when decoded.

    Args:
        source: a folder with one sub-folder per class, or a list file (``.txt``-style
            ``path label`` lines, mmaction2 ``path num_frames label`` lines, or CSV with a
            ``path,label[,start,end]`` header).
        root: folder that relative paths in a list file are resolved against (default:
            the list file's folder).
        class_names: class names to map labels onto (a validation split uses the
            training split's); default: the sorted class folders, the sorted label names,
            or ``"0" ... "max"`` for integer labels.

    Raises:
        UserError: ``source`` is missing, empty, or not laid out as expected; the message
            names the path and shows the expected layouts.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return _scan_folder(path, class_names)
    if path.is_file():
        return _scan_list(path, Path(root).expanduser() if root is not None else path.parent, class_names)
    raise UserError(f"{path}: no such folder or list file\n{LAYOUT_HELP}")


def _scan_folder(root: Path, class_names: Sequence[str] | None) -> VideoList:
    entries = _listdir(root)
    class_dirs = [e for e in entries if e.is_dir()]
    if not class_dirs:
        loose = sum(1 for e in entries if _is_video_file(e.name))
        found = f"{loose} video files directly in it" if loose else "no class folders in it"
        raise UserError(f"{root}: {found}; expected a folder per class\n{LAYOUT_HELP}")
    names = [d.name for d in class_dirs]
    index = _class_index(names, class_names, where=str(root))
    items: list[VideoItem] = []
    for d in class_dirs:
        inside = _listdir(Path(d.path))
        videos = [e.path for e in inside if e.is_file() and _is_video_file(e.name)]
        frame_dirs = [e.path for e in inside if e.is_dir()]
        if frame_dirs and not _frame_files(frame_dirs[0]):
            raise UserError(
                f"{frame_dirs[0]}: a folder inside class folder {d.path} with no frame images "
                f"({', '.join(IMAGE_EXTENSIONS)}); if {d.name!r} is a split rather than a class, "
                f"pass {d.path} instead of {root}\n{LAYOUT_HELP}"
            )
        items += [VideoItem(os.path.abspath(p), index[d.name]) for p in sorted(videos + frame_dirs)]
    if not items:
        raise UserError(
            f"{root}: no videos ({' '.join(VIDEO_EXTENSIONS)}) or frame folders in its "
            f"{len(class_dirs)} class folders\n{LAYOUT_HELP}"
        )
    return VideoList(tuple(items), tuple(index), str(root))


def _listdir(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as e:
        raise UserError(f"{folder}: cannot list it ({e.strerror})") from None


def _is_video_file(name: str) -> bool:
    return name.lower().endswith(VIDEO_EXTENSIONS)


@dataclass(frozen=True)
class _Row:
    line: int
    path: str
    label: str
    start: float | None = None
    end: float | None = None


def _scan_list(path: Path, base: Path, class_names: Sequence[str] | None) -> VideoList:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is not a column name
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read it as a UTF-8 list file ({e})") from None
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
    header = [h.strip().lower() for h in first.split(",")]
    is_csv = path.suffix.lower() == ".csv" or ("path" in header and "label" in header)
    rows = _parse_csv(path, text) if is_csv else _parse_lines(path, text)
    if not rows:
        raise UserError(f"{path}: lists no videos\n{LAYOUT_HELP}")
    labels, names = _label_indices(rows, class_names, where=str(path))
    items = tuple(
        VideoItem(_resolve(r.path, base), label, r.start, r.end) for r, label in zip(rows, labels, strict=True)
    )
    return VideoList(items, names, str(path))


def _parse_lines(path: Path, text: str) -> list[_Row]:
    rows = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        if len(tokens) < 2:
            raise UserError(
                f"{path}:{n}: expected 'path label' or 'path num_frames label' (whitespace-separated), got {line!r}"
            )
        rest = tokens[1:]
        if len(rest) == 2 and all(_is_int(t) for t in rest):  # mmaction2 rawframes: path num_frames label
            rows.append(_Row(n, tokens[0], rest[1]))
        else:  # a class name may contain spaces ("air drumming"); paths may not (use CSV)
            rows.append(_Row(n, tokens[0], " ".join(rest)))
    return rows


def _parse_csv(path: Path, text: str) -> list[_Row]:
    numbered = [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip() and not ln.lstrip().startswith("#")]
    records = zip((n for n, _ in numbered), csv.reader(ln for _, ln in numbered))
    header = [h.strip().lower() for h in next(records, (0, []))[1]]
    missing = [c for c in ("path", "label") if c not in header]
    if missing:
        raise UserError(
            f"{path}: CSV header {','.join(header)!r} lacks column(s) {', '.join(missing)}; "
            f"expected 'path,label' with optional 'start,end' (seconds)"
        )
    col = {name: header.index(name) for name in header}
    start_col = col.get("start", col.get("time_start"))
    end_col = col.get("end", col.get("time_end"))
    rows = []
    for n, fields in records:
        if len(fields) < len(header):
            raise UserError(f"{path}:{n}: expected {len(header)} fields ({','.join(header)}), got {fields}")
        start = _seconds(fields, start_col, path, n, "start")
        end = _seconds(fields, end_col, path, n, "end")
        if start is not None and end is not None and end <= start:
            raise UserError(f"{path}:{n}: end ({end}) must be after start ({start})")
        rows.append(_Row(n, fields[col["path"]].strip(), fields[col["label"]].strip(), start, end))
    return rows


def _seconds(fields: list[str], col: int | None, path: Path, row: int, name: str) -> float | None:
    if col is None or not fields[col].strip():
        return None
    try:
        value = float(fields[col])
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise UserError(f"{path}:{row}: {name} must be a number of seconds >= 0, got {fields[col]!r}")
    return value


def _label_indices(
    rows: list[_Row], class_names: Sequence[str] | None, *, where: str
) -> tuple[list[int], tuple[str, ...]]:
    """Labels as class indices, and the class names they index."""
    if all(_is_int(r.label) for r in rows):
        labels = [int(r.label) for r in rows]
        names = tuple(class_names) if class_names is not None else tuple(str(i) for i in range(max(labels) + 1))
        bad = next((r for r, v in zip(rows, labels) if not 0 <= v < len(names)), None)
        if bad is not None:
            raise UserError(f"{where}:{bad.line}: label {bad.label} is not a class index 0..{len(names) - 1}")
        return labels, names
    index = _class_index(sorted({r.label for r in rows}), class_names, where=where)
    return [index[r.label] for r in rows], tuple(index)


def _class_index(found: Sequence[str], class_names: Sequence[str] | None, *, where: str) -> dict[str, int]:
    if class_names is None:
        return {name: i for i, name in enumerate(found)}
    index = {name: i for i, name in enumerate(class_names)}
    unknown = [name for name in found if name not in index]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise UserError(f"{where}: {len(unknown)} class(es) not among the training classes: {shown}")
    return index


def _is_int(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _resolve(path: str, base: Path) -> str:
    p = Path(path).expanduser()
    return os.path.normpath(p if p.is_absolute() else base / p)


def _frame_files(folder: str) -> list[str]:
    """Frame images of a rawframes folder in frame order (``img_*`` if there are any)."""
    try:
        names = [n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")]
    except OSError:
        return []
    img = [n for n in names if n.startswith("img_")]
    return [os.path.join(folder, n) for n in sorted(img or names, key=_natural_key)]


def _natural_key(name: str) -> list[int | str]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _has_space(path: str) -> bool:
    return any(ch.isspace() for ch in path)


def write_video_list(
    items: Sequence[VideoItem],
    class_names: Sequence[str],
    path: str | Path,
    *,
    fmt: Literal["txt", "csv"] | None = None,
) -> None:
    """Write ``items`` as a list file that :func:`scan_videos` reads back, labels as class names.

    Args:
        fmt: ``"txt"`` (``path label`` lines) or ``"csv"`` (``path,label`` and, if any
            item has them, ``start,end``); default from the suffix of ``path``.
    """
    path = Path(path)
    fmt = fmt or ("csv" if path.suffix.lower() == ".csv" else "txt")
    if fmt == "csv":
        times = any(v.start is not None or v.end is not None for v in items)
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label", "start", "end"] if times else ["path", "label"])
            for v in items:
                row = [v.path, class_names[v.label]]
                writer.writerow(row + ["" if t is None else f"{t:g}" for t in (v.start, v.end)] if times else row)
        return
    lines = []
    for v in items:
        if _has_space(v.path):
            raise UserError(f"{path}: video path {v.path!r} contains whitespace; write a CSV list (fmt='csv')")
        if v.start is not None or v.end is not None:
            raise UserError(f"{path}: {v.path} has start/end times, which only CSV lists hold (fmt='csv')")
        lines.append(f"{v.path} {class_names[v.label]}\n")
    path.write_text("".join(lines), encoding="utf-8")
