"""Subsets and splits: the deterministic per-class hold-out, and Mini-Kinetics-style list files."""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ...errors import UserError
from .index import VideoItem, VideoList, _has_space, _is_int, scan_videos, write_video_list


def holdout_split(videos: VideoList, fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Split positions of ``videos`` into (train, held out), per class, deterministically.

    Each class's videos, sorted by path, are shuffled by a generator seeded with
    ``(seed, crc32(class name))`` and ``round(fraction * n)`` of them held out (at least
    one, and never all, when a class has two or more videos; none when it has one).
    """
    by_class: dict[int, list[int]] = {}
    for i, item in enumerate(videos.items):
        by_class.setdefault(item.label, []).append(i)
    train, held = [], []
    for label, members in sorted(by_class.items()):
        members.sort(key=lambda i: videos.items[i].path)
        order = [members[j] for j in _class_rng(seed, videos.class_names[label]).permutation(len(members))]
        n = len(order)
        k = min(max(round(fraction * n), 1), n - 1) if n >= 2 else 0
        held += order[:k]
        train += order[k:]
    return sorted(train), sorted(held)


def _class_rng(seed: int, class_name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(class_name.encode())])


@dataclass(frozen=True)
class Subset:
    """List files written by :func:`make_subset`."""

    train: Path
    val: Path | None
    class_names: tuple[str, ...]
    train_videos: int
    val_videos: int


def make_subset(
    source: str | Path,
    out_dir: str | Path,
    *,
    classes: int | Sequence[str] | None = None,
    per_class: int | None = None,
    val_per_class: int = 0,
    val_source: str | Path | None = None,
    seed: int = 0,
    root: str | Path | None = None,
    fmt: Literal["txt", "csv"] | None = None,
) -> Subset:
    """Write list files for a subset in the spirit of Mini-Kinetics-200.

    Picks ``classes`` classes (a number: drawn with ``seed``; names: those) and up to
    ``per_class`` videos of each, writing ``out_dir/train.txt`` (``path label`` lines,
    absolute paths, class names as labels) or ``train.csv`` (``path,label[,start,end]``;
    chosen when needed, see ``fmt``). A source labelled by integers gets its chosen
    classes renumbered ``0 ... K-1``, in their original order.
    With ``val_per_class``, also ``val.txt``/``val.csv``: from ``val_source`` if given
    (e.g. Kinetics' own validation split), else held out of ``source`` first, disjoint from
    the training videos, leaving at least one training video per class. Everything is
    deterministic for a seed; each class's draw depends only on the seed and its name, so
    a class keeps its videos when other classes are added. Classes with fewer videos than
    asked give all they have.

    Args:
        source: a folder per class or a list file (see :func:`scan_videos`).
        out_dir: folder for the list files (created).
        classes: how many classes, or which; None: all.
        per_class: training videos per class; None: all (after the held-out ones).
        val_per_class: held-out videos per class (0: no val list).
        val_source: where held-out videos come from (default: ``source``).
        seed: seed of every draw.
        root: folder relative paths in list files are resolved against.
        fmt: ``"txt"`` or ``"csv"``; default CSV if any video has start/end times or a path
            with whitespace (Kinetics' class folders have spaces), else txt.

    Raises:
        UserError: a class name is unknown, more classes are asked for than exist, or a
            path cannot be written in the ``txt`` format (it contains whitespace).
    """
    if val_per_class < 0 or (per_class is not None and per_class < 1):
        raise UserError(f"subset: per_class must be >= 1 and val_per_class >= 0, got {per_class} and {val_per_class}")
    if classes is not None and not isinstance(classes, int) and not list(classes):
        raise UserError("subset: the list of classes is empty")
    videos = scan_videos(source, root=root)
    names = _choose_classes(videos, classes, seed)
    held_from = scan_videos(val_source, root=root, class_names=videos.class_names) if val_source else None
    by_class, held_by_class = _by_class(videos), _by_class(held_from) if held_from is not None else None
    train_items, val_items = _pick(videos, names, by_class, held_by_class, per_class, val_per_class, seed)
    fmt = fmt or _list_format(train_items + val_items)
    out = Path(out_dir).expanduser()
    train_path = out / f"train.{fmt}"
    val_path = out / f"val.{fmt}" if val_per_class else None
    labels = _list_labels(videos, names)
    _write_lists(out, [(train_path, train_items), (val_path, val_items)], labels, fmt)
    return Subset(train_path, val_path, tuple(names), len(train_items), len(val_items))


def _pick(
    videos: VideoList,
    names: list[str],
    by_class: dict[int, list[VideoItem]],
    held_by_class: dict[int, list[VideoItem]] | None,
    per_class: int | None,
    val_per_class: int,
    seed: int,
) -> tuple[list[VideoItem], list[VideoItem]]:
    """The training and held-out videos of classes ``names`` (see :func:`make_subset`); held-out
    ones from ``held_by_class`` if given, else from ``by_class``. Warns (as :func:`make_subset`'s
    caller) about classes with fewer videos than asked for."""
    train_items: list[VideoItem] = []
    val_items: list[VideoItem] = []
    short: list[str] = []
    for name in names:
        label = videos.class_names.index(name)
        mine = _shuffled(by_class.get(label, []), name, seed)
        if val_per_class and held_by_class is not None:
            val = _shuffled(held_by_class.get(label, []), name, seed)[:val_per_class]
        else:
            val = mine[: min(val_per_class, max(len(mine) - 1, 0))]
        rest = mine[len(val) :] if held_by_class is None else mine
        train = rest[:per_class] if per_class is not None else rest
        if (per_class is not None and len(train) < per_class) or len(val) < val_per_class:
            short.append(name)
        train_items += train
        val_items += val
    if short:
        warnings.warn(
            f"{len(short)} class(es) have fewer videos than asked for: {', '.join(short[:5])}"
            + (" ..." if len(short) > 5 else ""),
            UserWarning,
            stacklevel=3,
        )
    return train_items, val_items


def _list_format(items: list[VideoItem]) -> Literal["txt", "csv"]:
    """CSV if any video has start/end times or a path with whitespace, else txt."""
    needs_csv = any(v.start is not None or v.end is not None or _has_space(v.path) for v in items)
    return "csv" if needs_csv else "txt"


def _list_labels(videos: VideoList, names: list[str]) -> list[str]:
    """The label written for each class of ``videos``: its name, or for integer labels the
    chosen classes renumbered ``0 ... K-1``."""
    labels = list(videos.class_names)
    if all(_is_int(n) for n in labels):  # integer labels: renumber the chosen classes 0 ... K-1
        for j, name in enumerate(names):
            labels[videos.class_names.index(name)] = str(j)
    return labels


def _write_lists(
    out: Path, lists: list[tuple[Path | None, list[VideoItem]]], labels: list[str], fmt: Literal["txt", "csv"]
) -> None:
    """Write each ``(path, videos)`` of ``lists`` whose path is not None, into ``out`` (created)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for path, items in lists:
            if path is not None:
                write_video_list(items, labels, path, fmt=fmt)
    except OSError as e:
        raise UserError(f"subset: cannot write the list files into {str(out)!r}: {e}") from None


def _choose_classes(videos: VideoList, classes: int | Sequence[str] | None, seed: int) -> list[str]:
    names = list(videos.class_names)
    if classes is None:
        return names
    if isinstance(classes, int):
        if not 1 <= classes <= len(names):
            raise UserError(f"classes: asked for {classes} classes, {videos.source} has {len(names)}")
        pick = np.random.default_rng(seed).choice(len(names), size=classes, replace=False)
        return [names[i] for i in sorted(pick.tolist())]
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise UserError(f"classes: {', '.join(map(repr, unknown[:5]))} not among the classes of {videos.source}")
    return sorted(set(classes), key=names.index)


def _by_class(videos: VideoList) -> dict[int, list[VideoItem]]:
    """Videos by class, without empty files (a zero-byte video can never be read)."""
    groups: dict[int, list[VideoItem]] = {}
    empty: list[str] = []
    for v in videos.items:
        if _is_empty_file(v.path):
            empty.append(v.path)
            continue
        groups.setdefault(v.label, []).append(v)
    if empty:
        warnings.warn(
            f"subset: left out {len(empty)} empty (zero-byte) video file(s) of {videos.source}: "
            + ", ".join(empty[:3])
            + (" ..." if len(empty) > 3 else ""),
            UserWarning,
            stacklevel=3,
        )
    return groups


def _is_empty_file(path: str) -> bool:
    p = Path(path)
    try:
        return p.is_file() and p.stat().st_size == 0
    except OSError:
        return False


def _shuffled(members: list[VideoItem], class_name: str, seed: int) -> list[VideoItem]:
    members = sorted(members, key=lambda v: v.path)
    order = _class_rng(seed, class_name).permutation(len(members))
    return [members[j] for j in order]
