"""Would the proxy trainer wait for real video? Decoded-clip cache vs decoding on the fly.

Makes its own data in a temporary folder: 40 H.264 videos (4 classes x 10, 320x240,
3 s at 30 fps, moving shapes on a textured background), then for each proxy clip size
(8 frames, stride 2, crops of 112 and 64, batch 16) measures

* cache: clips/s out of ``video_clip_data(..., cache=True)``'s ``train_batches`` (the
  cache is built first; its build time is printed, not counted);
* on the fly: the same through ``cache=False``, which decodes every clip's frames from the
  video file (seeking to the keyframe before the first frame needed, stopping after the
  last) on every read;
* training: clips/s of the ``tiny`` space's ``all_3d`` model, forward + backward + SGD
  step on random batches of the same shape, on the CPU, in the main process.

Both data paths use the same DataLoader settings (the default number of workers,
``min(4, cpus - 1)``) and hand out identical batches for the same seed (checked). The
trainer is data-bound when the data rate is below the training rate; the goal is cache
clips/s >= training clips/s at proxy sizes. Every ratio compares numbers measured in this
run on this machine. The last line is the headline: cache vs on-the-fly clips/s at 112.

Run from anywhere, no flags: ``python benchmarks/video_pipeline.py`` (about 1-2 minutes on
2 CPU cores). Needs PyAV (``av``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent

CLASSES, PER_CLASS = 4, 10
WIDTH, HEIGHT, SECONDS, FPS = 320, 240, 3, 30
FRAMES, STRIDE, BATCH = 8, 2, 16
SIZES = (112, 64)
MIN_SECONDS = 6.0  # each data measurement runs at least this long (after a warm-up batch)


def _imports():
    try:
        import placement_search  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        import av  # noqa: F401
    except ImportError:
        print("PyAV is not installed; this benchmark decodes videos with it: pip install av", file=sys.stderr)
        sys.exit(1)


def make_videos(root: Path) -> None:
    """CLASSES x PER_CLASS videos: a textured background and a disk moving per class."""
    import av
    import numpy as np

    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    rng = np.random.default_rng(0)
    for c in range(CLASSES):
        (root / f"class_{c}").mkdir(parents=True)
        for v in range(PER_CLASS):
            texture = rng.integers(0, 60, (HEIGHT, WIDTH, 1), dtype=np.uint8)
            base = np.concatenate(
                [(xs / WIDTH * 120)[..., None], (ys / HEIGHT * 120)[..., None], np.full((HEIGHT, WIDTH, 1), 40 * c)],
                axis=2,
            ).astype(np.uint8)
            base = base + texture
            with av.open(str(root / f"class_{c}" / f"v{v:02d}.mp4"), "w") as out:
                stream = out.add_stream("libx264", rate=FPS)
                stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
                stream.options = {"preset": "veryfast", "g": "30"}
                for k in range(SECONDS * FPS):
                    angle = 2 * np.pi * (k / (SECONDS * FPS)) * (c + 1) + v
                    cx = WIDTH / 2 + 90 * np.cos(angle)
                    cy = HEIGHT / 2 + 70 * np.sin(angle)
                    disk = ((xs - cx) ** 2 + (ys - cy) ** 2 < 30**2)[..., None]
                    frame = np.where(disk, np.uint8(230), base)
                    for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                        out.mux(packet)
                for packet in stream.encode():
                    out.mux(packet)


def data_rate(data: Any, min_seconds: float = MIN_SECONDS) -> tuple[float, Any]:
    """Clips/s out of ``data.train_batches``, after one warm-up batch (worker start-up)."""
    import torch

    batches = data.train_batches(BATCH, seed=0, device=torch.device("cpu"))
    first = next(batches)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_seconds:
        next(batches)
        n += 1
    rate = n * BATCH / (time.perf_counter() - t0)
    batches.close()
    return rate, first


def train_rate(size: int, steps: int = 6) -> float:
    """Clips/s of forward + backward + SGD step of the tiny space's all_3d model."""
    import torch

    from placement_search import load_space

    torch.manual_seed(0)
    model = load_space("tiny").build("all_3d", num_classes=CLASSES).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(BATCH, 3, FRAMES, size, size)
    y = torch.randint(0, CLASSES, (BATCH,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * BATCH / (time.perf_counter() - t0)


def main() -> int:
    _imports()
    import torch

    from placement_search.data.video import default_num_workers, video_clip_data

    workers = default_num_workers()
    print(
        f"{CLASSES * PER_CLASS} videos {WIDTH}x{HEIGHT}, {SECONDS} s at {FPS} fps (H.264); clips {FRAMES} frames, "
        f"stride {STRIDE} at 12 fps, batch {BATCH}; DataLoader workers {workers} (default), "
        f"{os.cpu_count()} CPUs; torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    headline = 0.0
    with tempfile.TemporaryDirectory(prefix="placement-search-bench-") as tmp:
        videos, cache_dir = Path(tmp) / "videos", Path(tmp) / "cache"
        t0 = time.perf_counter()
        make_videos(videos)
        print(f"made the videos in {time.perf_counter() - t0:.1f} s")
        for size in SIZES:
            t0 = time.perf_counter()
            cached = video_clip_data(videos, frames=FRAMES, size=size, stride=STRIDE, cache_dir=cache_dir)
            build = time.perf_counter() - t0
            live = video_clip_data(videos, frames=FRAMES, size=size, stride=STRIDE, cache=False)
            cache_rate, cache_first = data_rate(cached)
            live_rate, live_first = data_rate(live)
            same = all(torch.equal(a, b) for a, b in zip(cache_first, live_first))
            train = train_rate(size)
            print(f"\nsize {size} (frames decoded at short side {cached.info['decode']['short_side']}):")
            print(
                f"  cache build    {build:6.1f} s for {len(cached.train) + cached.eval_size} videos (not counted below)"
            )
            print(f"  cache          {cache_rate:8.1f} clips/s")
            print(f"  on the fly     {live_rate:8.1f} clips/s   (same batches as the cache: {'yes' if same else 'NO'})")
            print(f"  training tiny  {train:8.1f} clips/s   (all_3d, forward + backward + SGD, CPU)")
            bound = "data-bound" if cache_rate < train else "not data-bound"
            print(f"  cache / training {cache_rate / train:.1f}x: the trainer is {bound} on the cache")
            print(
                f"  on the fly / training {live_rate / train:.1f}x: "
                f"{'data-bound' if live_rate < train else 'not data-bound'} without it"
            )
            print(f"  cache vs on the fly {cache_rate / live_rate:.1f}x")
            if not same:
                print("FAIL: cache and on-the-fly decoding gave different batches")
                return 1
            if size == SIZES[0]:
                headline = cache_rate / live_rate
    print(f"\ncache vs on-the-fly decode: {headline:.1f}x clips/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
