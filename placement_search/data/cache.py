"""The decoded-clip cache: every video decoded once, read by every trial on the machine.

Proxy runs read the same few thousand clips hundreds of times, so each video is decoded
once, at proxy resolution and a fixed frame rate, into one flat ``uint8`` file that
readers memory-map. A cache is a folder::

    <cache dir>/
      train-3f9c0a51d2e4b6a7/         one finished cache: <name>-<hash of what it holds>
        frames.u8                     every video's frames, (F, H, W, 3) uint8, back to back
        index.json                    offsets, shapes, labels, source paths, "complete": true
      train-3f9c0a51d2e4b6a7.lock     held (fcntl.flock) by the one process building it
      .train-3f9c0a51d2e4b6a7.partial a build in progress (or one that was killed: resumed)

The hash covers everything the content depends on (the caller's key: source list,
labels, file sizes and modification times, decoding settings) and :data:`CACHE_VERSION`,
so different settings get different caches and a changed video gets a new one.

Concurrency, crashes and resuming: a builder takes the lock, builds into a partial folder
beside the final one, writes ``index.json`` last (with ``"complete": true``) and renames the
folder into place, which is atomic. A second builder of the same cache blocks on the lock
and then finds the finished cache. A killed (or failed) builder leaves its partial folder,
which is never read as a cache: the next builder of the same cache resumes it from its
journal (``progress.jsonl``: one line per finished video, written only after that video's
frames are on disk), so a kill costs at most the last few seconds of decoding. The lock
dies with its holder.

Reading is lazy: :class:`ClipCache` loads the small index and opens the data file with
``np.memmap`` (read-only) on first use in each process, so a DataLoader worker receives
only offsets and shapes when it is pickled, never frames.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import numpy as np

from ..errors import UserError

try:  # POSIX; elsewhere concurrent builders are not serialised (see _lock)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CACHE_ENV",
    "CACHE_VERSION",
    "CacheBuild",
    "ClipCache",
    "cache_location",
    "default_cache_dir",
    "find_cache",
    "open_or_build",
    "partial_progress",
]

log = logging.getLogger(__name__)

#: bump when the layout or the decoding changes, so old caches are not reused
CACHE_VERSION = 1
#: environment variable overriding the default cache folder
CACHE_ENV = "PLACEMENT_SEARCH_CACHE"

_DATA = "frames.u8"
_INDEX = "index.json"


def default_cache_dir() -> Path:
    """``$PLACEMENT_SEARCH_CACHE`` if set, else ``~/.cache/placement-search/clips``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "placement-search" / "clips"


class ClipCache:
    """Read-only view of one finished cache.

    Entries are numbered like the list the cache was built from; an entry whose video
    could not be decoded has zero frames and its reason in :attr:`failures`.

    Args:
        path: the cache folder (``<cache dir>/<name>-<hash>``).
        index: its parsed ``index.json``, if already read and checked.

    Raises:
        ValueError: the folder is not a complete cache of this version.
    """

    def __init__(self, path: str | Path, index: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        index = index or _read_index(self.path)
        if index is None:
            raise ValueError(f"{self.path}: not a complete decoded-clip cache (version {CACHE_VERSION})")
        self.key: str = index["key"]
        self.info: dict[str, Any] = index["info"]
        self.sources: list[str] = index["sources"]
        self.labels = np.asarray(index["labels"], dtype=np.int64)
        self.offsets = np.asarray(index["offsets"], dtype=np.int64)
        self.shapes = np.asarray(index["shapes"], dtype=np.int64).reshape(-1, 3)
        self.failures: list[tuple[int, str]] = [(int(i), str(why)) for i, why in index["failures"]]
        self.nbytes = int(index["total_bytes"])
        self._data: np.memmap | None = None

    def __len__(self) -> int:
        return len(self.sources)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_data"] = None  # each process maps the file itself
        return state

    def num_frames(self, i: int) -> int:
        """Frames stored for entry ``i`` (0 if it could not be decoded)."""
        return int(self.shapes[i, 0])

    def label(self, i: int) -> int:
        return int(self.labels[i])

    def read(self, i: int, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Frames of entry ``i``, ``(len(indices), H, W, 3)`` uint8 (all frames if None).

        Copies only the frames asked for out of the memory map.
        """
        f, h, w = (int(v) for v in self.shapes[i])
        if f == 0:
            raise ValueError(f"{self.sources[i]}: not in the cache (it could not be decoded)")
        if self._data is None:
            self._data = np.memmap(self.path / _DATA, dtype=np.uint8, mode="r")
        start = int(self.offsets[i])
        video = self._data[start : start + f * h * w * 3].reshape(f, h, w, 3)
        if indices is None:
            return np.array(video)
        return np.asarray(video[np.asarray(indices, dtype=np.int64)])


@dataclass(frozen=True)
class CacheBuild:
    """What :func:`open_or_build` did."""

    cache: ClipCache
    #: True if this call decoded the videos, False if it found the cache finished
    built: bool
    #: seconds spent (waiting for another builder included)
    seconds: float
    #: videos a killed earlier build had finished, kept rather than decoded again
    resumed: int = 0


def open_or_build(
    cache_dir: str | Path,
    name: str,
    key: Any,
    sources: Sequence[str],
    labels: Sequence[int],
    decode: Callable[[int], np.ndarray],
    *,
    info: dict[str, Any] | None = None,
    workers: int | None = None,
) -> CacheBuild:
    """Open the cache for ``key``, building it first if no finished one exists.

    Args:
        cache_dir: folder holding caches (created if missing).
        name: readable prefix of the cache folder's name (e.g. the list file's stem).
        key: JSON-able description of everything the content depends on; its hash (with
            :data:`CACHE_VERSION`) names the cache.
        sources: one source path per entry (stored in the index, shown in messages).
        labels: one label per entry.
        decode: ``decode(i)`` returns entry ``i``'s frames ``(F, H, W, 3)`` uint8, ``F >= 1``;
            an exception marks the entry as failed, its message kept as the reason.
        info: JSON-able settings stored in the index for people reading it.
        workers: decoding threads (default ``min(8, cpus)``); the decoder should release
            the GIL (PyAV and Pillow do).

    Raises:
        UserError: the cache folder cannot be created or written (the message names it).
    """
    if len(sources) != len(labels):
        raise ValueError(f"{len(sources)} sources but {len(labels)} labels")
    t0 = time.perf_counter()
    root, folder_name = cache_location(cache_dir, name, key)
    final = root / folder_name
    if (index := _read_index(final)) is not None:
        return CacheBuild(ClipCache(final, index), built=False, seconds=time.perf_counter() - t0)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cache dir {root}: cannot create it ({e}); set cache_dir or ${CACHE_ENV}") from None
    with _lock(root / f"{folder_name}.lock"):
        if (index := _read_index(final)) is not None:  # another process finished it while we waited
            return CacheBuild(ClipCache(final, index), built=False, seconds=time.perf_counter() - t0)
        resumed = _build_in_place(root, folder_name, _Job(sources, labels, decode, info or {}, workers))
    return CacheBuild(ClipCache(final), built=True, seconds=time.perf_counter() - t0, resumed=resumed)


def cache_location(cache_dir: str | Path, name: str, key: Any) -> tuple[Path, str]:
    """``(folder of caches, name of this cache's folder)`` for ``key`` (see :func:`open_or_build`)."""
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, key], sort_keys=True).encode()).hexdigest()[:16]
    return Path(os.path.abspath(Path(cache_dir).expanduser())), f"{_slug(name)}-{digest}"


def find_cache(cache_dir: str | Path, name: str, key: Any) -> ClipCache | None:
    """The finished cache for ``key``, or None (nothing is built or locked)."""
    root, folder_name = cache_location(cache_dir, name, key)
    index = _read_index(root / folder_name)
    return ClipCache(root / folder_name, index) if index is not None else None


def partial_progress(cache_dir: str | Path, name: str, key: Any) -> int:
    """Videos a killed build of ``key`` had finished (0: none), which the next build keeps."""
    root, folder_name = cache_location(cache_dir, name, key)
    return len(_read_journal(root / f".{folder_name}.partial", folder_name.rsplit("-", 1)[-1])[0])


#: seconds between journal writes (each one syncs the frames written so far first)
JOURNAL_EVERY_S = 2.0
_JOURNAL = "progress.jsonl"


def _read_journal(folder: Path, digest: str) -> tuple[list[list[Any]], int]:
    """The finished entries ``[offset, shape, failure]`` a partial build recorded, and the data
    bytes they cover; ``([], 0)`` when there is nothing usable (another key, a torn file)."""
    entries: list[list[Any]] = []
    try:
        lines = (folder / _JOURNAL).read_text().splitlines()
        size = (folder / _DATA).stat().st_size
    except OSError:
        return [], 0
    if not lines or lines[0] != json.dumps({"key": digest, "version": CACHE_VERSION}):
        return [], 0
    end = 0
    for line in lines[1:]:
        try:
            offset, shape, failure = json.loads(line)
        except ValueError:
            break  # a line cut by the kill: everything before it stands
        nbytes = int(np.prod(shape)) * 3
        if offset != end or offset + nbytes > size:
            break
        entries.append([offset, shape, failure])
        end = offset + nbytes
    return entries, end


@dataclass(frozen=True)
class _Job:
    """What a build decodes and records (see :func:`open_or_build`)."""

    sources: Sequence[str]
    labels: Sequence[int]
    decode: Callable[[int], np.ndarray]
    info: dict[str, Any]
    workers: int | None


def _build_in_place(root: Path, folder_name: str, job: _Job) -> int:
    """Build the cache ``root / folder_name`` (its lock held) in its partial folder, then rename
    that into place; returns the videos resumed from a killed build."""
    final = root / folder_name
    for stale in root.glob(f".{folder_name}.tmp-*"):  # killed builders of an older release
        shutil.rmtree(stale, ignore_errors=True)
    if final.exists():  # not a complete cache (tampered or foreign): replace it
        shutil.rmtree(final)
    partial = root / f".{folder_name}.partial"
    try:
        partial.mkdir(exist_ok=True)
        resumed = _build(partial, folder_name.rsplit("-", 1)[-1], job)
        os.rename(partial, final)
        _fsync_dir(root)
    except OSError as e:  # the partial folder stays: the next build resumes it
        if e.errno == errno.ENOSPC:
            raise UserError(
                f"cache dir {root}: disk full while building {folder_name}; point cache_dir or "
                f"${CACHE_ENV} at a larger disk, or lower max_frames / the clip size (what was decoded "
                "is kept: the next build resumes it)"
            ) from None
        raise UserError(f"cache dir {root}: cannot write {folder_name} ({e})") from None
    return resumed


def _build(folder: Path, digest: str, job: _Job) -> int:
    """Decode into ``folder`` (resuming what its journal records); returns the videos resumed."""
    n = len(job.sources)
    done, offset = _read_journal(folder, digest)
    start = len(done)
    if start:
        log.info("decoded-clip cache: resuming a killed build at video %d of %d", start + 1, n)
    else:
        log.info("decoded-clip cache: decoding %d videos into %s", n, folder.parent)
    from ..progressbar import progress_bar

    bar = progress_bar(n, "decoding videos into the clip cache", "video")
    if start:
        with open(folder / _DATA, "r+b") as data:
            data.truncate(offset)
    # the journal again from its valid lines (a torn last line would spoil what follows it)
    journal = open(folder / _JOURNAL, "w")
    journal.write(json.dumps({"key": digest, "version": CACHE_VERSION}) + "\n")
    journal.writelines(json.dumps(e) + "\n" for e in done)
    with bar, journal, open(folder / _DATA, "r+b" if start else "wb") as f:
        f.seek(offset)
        bar.update(start)
        entries = _Entries(f, journal, done, offset, n)
        for i, result in enumerate(_ordered_map(job.decode, n, job.workers, start=start), start=start):
            bar.update(1)
            entries.add(i, result, job.sources[i])
        entries.sync()
    _finish(folder, digest, job, entries)
    return start


class _Entries:
    """The entries of a build in progress: frames appended to the data file, and the journal
    lines that vouch for them, written once the frames are on disk (every
    :data:`JOURNAL_EVERY_S` seconds, and at :meth:`sync`)."""

    def __init__(self, data: BinaryIO, journal: TextIO, done: list[list[Any]], offset: int, total: int) -> None:
        self.data = data
        self.journal = journal
        self.offset = offset
        self.offsets = [e[0] for e in done]
        self.shapes = [e[1] for e in done]
        self.failures: list[list[Any]] = [[i, e[2]] for i, e in enumerate(done) if e[2] is not None]
        self.pending: list[str] = []
        self.total = total
        self.last_report = self.last_journal = time.monotonic()

    def add(self, i: int, result: np.ndarray | BaseException, source: str) -> None:
        """Append entry ``i``: its frames, or no frames and the reason it failed."""
        failure = None
        if isinstance(result, BaseException):
            failure = str(result) or type(result).__name__
            self.failures.append([i, failure])
            frames = np.zeros((0, 0, 0, 3), np.uint8)
        else:
            frames = _check_frames(result, source)
        self.offsets.append(self.offset)
        self.shapes.append(list(frames.shape[:3]))
        self.data.write(np.ascontiguousarray(frames).data)
        self.pending.append(json.dumps([self.offset, list(frames.shape[:3]), failure]) + "\n")
        self.offset += frames.nbytes
        self._checkpoint(i)

    def _checkpoint(self, i: int) -> None:
        """Every :data:`JOURNAL_EVERY_S` seconds a sync; every 30 s a progress line."""
        now = time.monotonic()
        if now - self.last_journal >= JOURNAL_EVERY_S:
            self.sync()
            self.last_journal = now
        if now - self.last_report > 30:
            log.info("decoded-clip cache: %d / %d videos, %.2f GB", i + 1, self.total, self.offset / 1e9)
            self.last_report = now

    def sync(self) -> None:
        """Frames first, then the journal lines that vouch for them."""
        self.data.flush()
        os.fsync(self.data.fileno())
        self.journal.write("".join(self.pending))
        self.journal.flush()
        os.fsync(self.journal.fileno())
        self.pending.clear()


def _finish(folder: Path, digest: str, job: _Job, entries: _Entries) -> None:
    """Replace the journal of a finished build by the index that makes ``folder`` a cache."""
    index = {
        "version": CACHE_VERSION,
        "key": digest,
        "info": job.info,
        "sources": list(job.sources),
        "labels": [int(v) for v in job.labels],
        "offsets": entries.offsets,
        "shapes": entries.shapes,
        "failures": entries.failures,
        "total_bytes": entries.offset,
        "complete": True,  # written last: an index without it is never used
    }
    (folder / _JOURNAL).unlink()
    _write_json(folder / _INDEX, index)
    n, failed, gb = len(job.sources), len(entries.failures), entries.offset / 1e9
    log.info("decoded-clip cache: %d videos, %d failed, %.2f GB", n, failed, gb)


def _check_frames(frames: Any, source: str) -> np.ndarray:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise TypeError(f"{source}: decode must return a (F, H, W, 3) uint8 array, got {type(frames).__name__}")
    return frames


def _ordered_map(
    fn: Callable[[int], np.ndarray], n: int, workers: int | None, *, start: int = 0
) -> Iterator[np.ndarray | BaseException]:
    """``fn(i)`` for ``start <= i < n`` in order, on threads, with a bounded number in flight."""
    workers = workers or min(8, os.cpu_count() or 1)

    def call(i: int) -> np.ndarray | BaseException:
        try:
            return fn(i)
        except Exception as e:
            return e

    if workers <= 1:
        yield from (call(i) for i in range(start, n))
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="clip-cache") as pool:
        pending: list[Future[np.ndarray | BaseException]] = []
        for i in range(start, n):
            pending.append(pool.submit(call, i))
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


def _read_index(folder: Path) -> dict[str, Any] | None:
    """The index of a complete cache of this version, else None."""
    try:
        with open(folder / _INDEX) as f:
            index = json.load(f)
        size = (folder / _DATA).stat().st_size
    except (OSError, ValueError):
        return None
    if not isinstance(index, dict) or index.get("complete") is not True or index.get("version") != CACHE_VERSION:
        return None
    if index.get("total_bytes") != size:
        return None
    return index


def _write_json(path: Path, data: Any) -> None:
    with open(path, "w") as f:
        json.dump(data, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class _lock:
    """Exclusive ``fcntl.flock`` on ``path`` for the ``with`` block; waits for the holder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> _lock:
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise UserError(f"cache dir {self.path.parent}: cannot create the lock file ({e.strerror})") from None
        if fcntl is None:  # pragma: no cover
            return self
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("decoded-clip cache: waiting for another process building %s", self.path.stem)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._fd is not None
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def _slug(name: str) -> str:
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return slug[:40] or "clips"
