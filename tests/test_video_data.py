"""Real-video data: layouts, decoding, clip sampling, transforms, subsets, the decoded-clip cache.

Every test video is tiny (64x48) and made here with PyAV; frame k of a video is a flat
grey of value 5k, so a decoded frame tells which source frame it is (``_ids``).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from placement_search.data import cache as C
from placement_search.data import video as V
from placement_search.errors import UserError

av = pytest.importorskip("av")
Image = pytest.importorskip("PIL.Image")

FPS = 24  # source frame rate of the test videos; decoded at 12 fps, so decoded frame j = source frame 2j
SPEC = V.DecodeSpec(short_side=32)  # 64x48 -> 43x32


# ---------------------------------------------------------------------------------------
# Test data


def _write_video(path: Path, n: int, *, codec: str = "libx264", gop: int = 12) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        if codec == "mpeg4":
            stream.bit_rate = 4_000_000
        else:
            stream.options = {"g": str(gop)}
        for k in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 5 * k, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _write_frames(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    for k in range(n):
        Image.fromarray(np.full((48, 64, 3), 5 * k, np.uint8)).save(folder / f"img_{k + 1:05d}.jpg", quality=95)


def _ids(frames: np.ndarray | torch.Tensor, channel_axis: int = -1) -> list[int]:
    """Source frame index of each frame of (T, H, W, 3) frames (or (3, T, H, W) with channel_axis=0)."""
    x = torch.as_tensor(np.asarray(frames)).float()
    t_axis = 1 if channel_axis == 0 else 0
    dims = [d for d in range(x.ndim) if d != t_axis]
    return [round(v / 5) for v in x.mean(dim=dims).tolist()]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder per class: walk/ (mp4, mkv, avi) and jump/ (mp4, webm, a short mp4)."""
    root = tmp_path_factory.mktemp("videos")
    for name in ("walk", "jump"):
        (root / name).mkdir()
    _write_video(root / "walk" / "w1.mp4", 48)
    _write_video(root / "walk" / "w2.mkv", 48)
    _write_video(root / "walk" / "w3.avi", 48, codec="mpeg4")
    _write_video(root / "jump" / "j1.mp4", 48)
    _write_video(root / "jump" / "j2.webm", 48, codec="libvpx-vp9")
    _write_video(root / "jump" / "j3_short.mp4", 8)
    (root / "jump" / "notes.txt").write_text("not a video")
    return root


@pytest.fixture(scope="module")
def with_corrupt(tmp_path_factory: pytest.TempPathFactory, videos: Path) -> Path:
    root = tmp_path_factory.mktemp("corrupt")
    for name in ("walk", "jump"):
        (root / name).mkdir()
        for f in sorted((videos / name).glob("*[0-9].mp4"))[:1]:
            (root / name / f.name).symlink_to(f)
    (root / "walk" / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
    return root


@pytest.fixture(scope="module")
def rawframes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rawframes")
    _write_frames(root / "walk" / "w1", 24)
    _write_frames(root / "jump" / "j1", 30)
    return root


def _item(videos: Path, name: str) -> V.VideoItem:
    return next(v for v in V.scan_videos(videos).items if v.path.endswith(name))


# ---------------------------------------------------------------------------------------
# Layouts and list files


def test_folder_per_class_sorted_classes_and_every_container(videos: Path) -> None:
    vl = V.scan_videos(videos)
    assert vl.class_names == ("jump", "walk")
    got = {Path(v.path).name: v.label for v in vl.items}
    assert got == {"j1.mp4": 0, "j2.webm": 0, "j3_short.mp4": 0, "w1.mp4": 1, "w2.mkv": 1, "w3.avi": 1}
    for item in vl.items:  # every container decodes to the right frames (0, 2, 4, ... at 12 fps)
        n = 4 if "short" in item.path else 24
        assert _ids(V.decode_video(item, SPEC)) == list(range(0, 2 * n, 2)), item.path


def test_list_file_class_names_indices_comments_and_root(videos: Path, tmp_path: Path) -> None:
    (tmp_path / "names.txt").write_text(
        f"# comment\n{videos}/walk/w1.mp4 walk\n\n{videos}/jump/j1.mp4 jump\n{videos}/walk/w2.mkv walk\n"
    )
    vl = V.scan_videos(tmp_path / "names.txt")
    assert vl.class_names == ("jump", "walk") and [v.label for v in vl.items] == [1, 0, 1]
    (tmp_path / "ints.txt").write_text("walk/w1.mp4 2\njump/j1.mp4 0\n")
    vl = V.scan_videos(tmp_path / "ints.txt", root=videos)  # relative paths against root
    assert vl.class_names == ("0", "1", "2") and [v.label for v in vl.items] == [2, 0]
    assert vl.items[0].path == str(videos / "walk" / "w1.mp4")
    (videos.parent / "rel.txt").write_text(f"{videos.name}/jump/j1.mp4 jump\n")  # against the list's folder
    assert V.scan_videos(videos.parent / "rel.txt").items[0].path == str(videos / "jump" / "j1.mp4")
    # a validation list maps its labels onto the training classes
    (tmp_path / "val.txt").write_text(f"{videos}/jump/j1.mp4 walk\n")
    assert V.scan_videos(tmp_path / "val.txt", class_names=("jump", "walk")).items[0].label == 1
    (tmp_path / "bad_val.txt").write_text(f"{videos}/jump/j1.mp4 swim\n")
    with pytest.raises(UserError, match="swim"):
        V.scan_videos(tmp_path / "bad_val.txt", class_names=("jump", "walk"))


def test_class_names_with_spaces(videos: Path, tmp_path: Path) -> None:
    (tmp_path / "k.txt").write_text(f"{videos}/walk/w1.mp4 air drumming\n{videos}/jump/j1.mp4 abseiling\n")
    assert V.scan_videos(tmp_path / "k.txt").class_names == ("abseiling", "air drumming")


def test_csv_with_start_end_decodes_that_window(videos: Path, tmp_path: Path) -> None:
    (tmp_path / "k.csv").write_text(
        "label,path,start,end\nwalk,walk/w1.mp4,0.5,1.5\njump,jump/j1.mp4,,\n", encoding="utf-8"
    )
    vl = V.scan_videos(tmp_path / "k.csv", root=videos)
    assert vl.class_names == ("jump", "walk")
    w1, j1 = vl.items
    assert (w1.start, w1.end, w1.label) == (0.5, 1.5, 1) and (j1.start, j1.end) == (None, None)
    assert _ids(V.decode_video(w1, SPEC)) == list(range(12, 36, 2))  # 0.5 s to 1.5 s at 12 fps
    (tmp_path / "kinetics.csv").write_text("path,label,time_start,time_end\nwalk/w1.mp4,walk,1,2\n")
    assert V.scan_videos(tmp_path / "kinetics.csv", root=videos).items[0].start == 1.0


def test_max_frames_keeps_the_middle(videos: Path) -> None:
    spec = V.DecodeSpec(short_side=32, fps=None, max_frames=10)
    assert _ids(V.decode_video(_item(videos, "w1.mp4"), spec)) == list(range(19, 29))


def test_rawframes_in_folders_and_in_mmaction_lists(rawframes: Path, tmp_path: Path) -> None:
    vl = V.scan_videos(rawframes)
    assert vl.class_names == ("jump", "walk") and len(vl) == 2
    spec = V.DecodeSpec(short_side=32, fps=12, rawframe_fps=24)  # every second image
    assert _ids(V.decode_video(vl.items[1], spec)) == list(range(0, 24, 2))
    assert V.decode_video(vl.items[1], spec).shape == (12, 32, 43, 3)
    (tmp_path / "raw.txt").write_text("walk/w1 24 1\njump/j1 30 0\n")  # mmaction2: path num_frames label
    items = V.scan_videos(tmp_path / "raw.txt", root=rawframes).items
    assert [v.label for v in items] == [1, 0]
    assert _ids(V.decode_video(items[1], V.DecodeSpec(short_side=32, fps=None))) == list(range(30))


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: None, "no class folders"),
        (lambda p: (p / "a.mp4").write_bytes(b""), "video files directly in it"),
        (lambda p: (p / "walk").mkdir(), "no videos"),
        (lambda p: (p / "train" / "walk").mkdir(parents=True), "pass .*train instead"),
    ],
    ids=["empty", "videos-in-root", "empty-classes", "one-level-too-high"],
)
def test_wrong_layouts_name_the_path_and_show_the_layout(tmp_path: Path, make, expected: str) -> None:
    root = tmp_path / "data"
    root.mkdir()
    make(root)
    with pytest.raises(UserError, match=expected) as err:
        V.scan_videos(root)
    assert str(root) in str(err.value) and "a folder per class" in str(err.value) and "train.csv" in str(err.value)


def test_bad_list_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such folder or list file"):
        V.scan_videos(tmp_path / "missing")
    (tmp_path / "one.txt").write_text("a.mp4 0\nb.mp4\n")
    with pytest.raises(UserError, match=r"one.txt:2: expected 'path label'"):
        V.scan_videos(tmp_path / "one.txt")
    (tmp_path / "h.csv").write_text("file,class\na.mp4,x\n")
    with pytest.raises(UserError, match=r"h.csv: CSV header .* lacks column\(s\) path, label"):
        V.scan_videos(tmp_path / "h.csv")
    (tmp_path / "t.csv").write_text("path,label,start,end\n# a comment\na.mp4,x,3,1\n")
    with pytest.raises(UserError, match=r"t.csv:3: end \(1.0\) must be after start"):
        V.scan_videos(tmp_path / "t.csv")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(UserError, match="lists no videos"):
        V.scan_videos(tmp_path / "empty.txt")


# ---------------------------------------------------------------------------------------
# Clip sampling


def test_sample_clip_centre_jitter_and_short_videos() -> None:
    assert V.sample_clip(24, 4, 2).tolist() == [8, 10, 12, 14]  # (24 - 7) // 2 = 8
    assert V.sample_clip(7, 4, 2).tolist() == [0, 2, 4, 6]
    starts = {int(V.sample_clip(24, 4, 2, rng=np.random.default_rng(s))[0]) for s in range(300)}
    assert starts == set(range(18))  # every start that fits
    assert V.sample_clip(5, 4, 2).tolist() == [0, 2, 4, 4]  # repeat the last frame
    assert V.sample_clip(5, 4, 2, pad="loop").tolist() == [0, 2, 4, 1]


def _dataset(source: V.FrameSource, positions: list[int], train: bool, frames: int = 4) -> V.VideoClipDataset:
    transform = V.ClipTransform(28, 32, train)
    return V.VideoClipDataset(source, positions, frames=frames, stride=2, transform=transform)


def test_eval_clip_is_exactly_the_middle_frames_and_train_jitter_is_seeded(videos: Path) -> None:
    vl = V.scan_videos(videos)
    source = V.DecodedVideos(vl, SPEC)
    w1 = next(i for i, v in enumerate(vl.items) if v.path.endswith("w1.mp4"))
    short = next(i for i, v in enumerate(vl.items) if "short" in v.path)
    val = _dataset(source, [w1, short], train=False)
    x, label = val[0]
    assert x.shape == (3, 4, 28, 28) and x.dtype == torch.uint8 and label == 1
    assert _ids(x, channel_axis=0) == [16, 20, 24, 28]  # decoded frames 8, 10, 12, 14 of 24
    assert _ids(val[1][0], channel_axis=0) == [0, 4, 6, 6]  # 4 decoded frames, padded with the last
    train = _dataset(source, [w1], train=True)
    firsts = [_ids(train[0, seed][0], channel_axis=0) for seed in range(12)]
    assert all(ids == list(range(ids[0], ids[0] + 16, 4)) for ids in firsts)
    assert len({ids[0] for ids in firsts}) > 3  # the start varies with the seed ...
    for seed in (0, 7):  # ... and the same seed gives the same clip, crop and flip
        assert torch.equal(train[0, seed][0], train[0, seed][0])


# ---------------------------------------------------------------------------------------
# Transforms


def test_resize_crop_flip_and_normalise() -> None:
    assert (V.default_resize(224), V.default_resize(112), V.default_resize(64)) == (256, 128, 73)
    clip = torch.arange(2 * 6 * 8 * 3, dtype=torch.int64).reshape(2, 6, 8, 3).to(torch.uint8)
    assert V.resize_short_side(clip, 12).shape == (2, 12, 16, 3)
    assert V.resize_short_side(clip.transpose(1, 2), 12).shape == (2, 16, 12, 3)
    assert V.resize_short_side(clip, 6) is clip
    assert torch.equal(V.center_crop(clip, 4), clip[:, 1:5, 2:6])
    rng = np.random.default_rng(0)
    for _ in range(20):
        crop = V.random_crop(clip, 4, rng)
        assert crop.shape == (2, 4, 4, 3)
        hits = [(t, x) for t in range(3) for x in range(5) if torch.equal(clip[:, t : t + 4, x : x + 4], crop)]
        assert hits
    with pytest.raises(ValueError, match="cannot crop 7x7 from 6x8"):
        V.center_crop(clip, 7)
    assert torch.equal(V.hflip(clip)[:, :, 0], clip[:, :, -1])
    assert V.to_cthw(clip).shape == (3, 2, 6, 8) and V.to_cthw(clip).is_contiguous()
    x = torch.full((2, 3, 1, 2, 2), 128, dtype=torch.uint8)
    y = V.normalize(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    expected = [(128 / 255 - m) / s for m, s in zip(V.KINETICS_MEAN, V.KINETICS_STD)]
    assert torch.allclose(y[0, :, 0, 0, 0], torch.tensor(expected))


def test_clip_transform_train_flips_about_half_eval_is_centre() -> None:
    frames = np.zeros((2, 32, 43, 3), np.uint8)
    frames[:, :, :21] = 200  # bright left half
    ev = V.ClipTransform(28, 32, train=False)(frames, np.random.default_rng(0))
    assert ev.shape == (3, 2, 28, 28) and torch.equal(ev, V.to_cthw(V.center_crop(torch.from_numpy(frames), 28)))
    left_bright = [
        bool(V.ClipTransform(28, 32, train=True)(frames, np.random.default_rng(s))[:, :, :, 0].float().mean() > 100)
        for s in range(40)
    ]
    assert 10 < sum(left_bright) < 30


# ---------------------------------------------------------------------------------------
# Subsets


@pytest.fixture()
def many(tmp_path: Path) -> Path:
    """Eight classes of 6 to 13 placeholder video files; the subset maker never decodes them (it
    only leaves out empty files, which can never be read)."""
    root = tmp_path / "kinetics"
    for c in range(8):
        (root / f"class {c}").mkdir(parents=True)  # spaces in class names, as in Kinetics
        for j in range(6 + c):
            (root / f"class {c}" / f"v{j:02d}.mp4").write_bytes(b"not decoded")
    return root


def test_subset_counts_determinism_and_split(many: Path, tmp_path: Path) -> None:
    a = V.make_subset(many, tmp_path / "a", classes=4, per_class=4, val_per_class=2, seed=1)
    b = V.make_subset(many, tmp_path / "b", classes=4, per_class=4, val_per_class=2, seed=1)
    c = V.make_subset(many, tmp_path / "c", classes=4, per_class=4, val_per_class=2, seed=2)
    assert a.train.read_text() == b.train.read_text() and a.val and b.val and a.val.read_text() == b.val.read_text()
    assert a.train.read_text() != c.train.read_text()
    assert len(a.class_names) == 4 and a.train_videos == 16 and a.val_videos == 8
    assert a.train.name == "train.csv"  # Kinetics-like class folders have spaces: CSV, not 'path label'
    train, val = V.scan_videos(a.train), V.scan_videos(a.val, class_names=V.scan_videos(a.train).class_names)
    assert train.class_names == a.class_names and set(train.class_names) <= {f"class {c}" for c in range(8)}
    assert not {v.path for v in train.items} & {v.path for v in val.items}
    assert all(os.path.isabs(v.path) for v in train.items)
    # a class keeps its videos whatever else is picked
    d = V.make_subset(many, tmp_path / "d", classes=["class 5"], per_class=4, val_per_class=2, seed=1)
    e = V.make_subset(many, tmp_path / "e", classes=["class 5", "class 7"], per_class=4, val_per_class=2, seed=1)
    assert set(d.train.read_text().splitlines()) <= set(e.train.read_text().splitlines())


def test_subset_short_classes_val_source_and_formats(many: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="fewer videos than asked"):
        s = V.make_subset(many, tmp_path / "s", classes=["class 0"], per_class=20, val_per_class=1)
    assert (s.train_videos, s.val_videos) == (5, 1)  # 6 videos: 1 held out, 5 left
    t = V.make_subset(many, tmp_path / "t", classes=2, per_class=2, val_per_class=1, val_source=many)
    assert t.train.read_text().startswith("path,label\n") and t.val_videos == 2
    with pytest.raises(UserError, match="asked for 9 classes"):
        V.make_subset(many, tmp_path / "u", classes=9)
    with pytest.raises(UserError, match="'swim'"):
        V.make_subset(many, tmp_path / "u", classes=["swim"])
    with pytest.raises(UserError, match="contains whitespace; write a CSV"):
        V.make_subset(many, tmp_path / "u", classes=["class 0"], fmt="txt")


def test_subset_txt_list(videos: Path, tmp_path: Path) -> None:
    s = V.make_subset(videos, tmp_path / "s", classes=1, per_class=2, seed=3)
    assert s.train.name == "train.txt" and s.val is None and s.train_videos == 2
    lines = s.train.read_text().splitlines()
    assert all(line.endswith(" " + s.class_names[0]) for line in lines)
    assert [v.path for v in V.scan_videos(s.train).items] == [line.split()[0] for line in lines]


def test_subset_of_integer_labels_is_renumbered(tmp_path: Path) -> None:
    (tmp_path / "all.txt").write_text("".join(f"c{c}/v{j}.mp4 {c}\n" for c in range(6) for j in range(3)))
    s = V.make_subset(tmp_path / "all.txt", tmp_path / "out", classes=["2", "5"], per_class=2)
    vl = V.scan_videos(s.train)
    assert vl.class_names == ("0", "1") and [Path(v.path).parent.name for v in vl.items if v.label == 1] == ["c5"] * 2


def test_subset_keeps_start_end_in_csv(videos: Path, tmp_path: Path) -> None:
    (tmp_path / "k.csv").write_text("path,label,start,end\nwalk/w1.mp4,walk,0.5,1.5\njump/j1.mp4,jump,0,1\n")
    s = V.make_subset(tmp_path / "k.csv", tmp_path / "out", root=videos)
    assert s.train.suffix == ".csv"
    assert {(v.start, v.end) for v in V.scan_videos(s.train).items} == {(0.5, 1.5), (0.0, 1.0)}


# ---------------------------------------------------------------------------------------
# Unreadable videos, the trainer-facing ClipData


@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
def test_corrupt_video_is_skipped_with_one_warning(with_corrupt: Path, tmp_path: Path, cache: bool) -> None:
    (tmp_path / "val.txt").write_text(f"{with_corrupt}/walk/w1.mp4 walk\n{with_corrupt}/walk/gone.mp4 walk\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = V.video_clip_data(
            with_corrupt, tmp_path / "val.txt", frames=4, size=28, cache=cache, cache_dir=tmp_path, num_workers=0
        )
    skipped = [w for w in caught if issubclass(w.category, V.SkippedVideosWarning)]
    assert len(skipped) == 1 and len(caught) == 1
    message = str(skipped[0].message)
    assert "skipped 2 of 5 videos" in message and "broken.mp4" in message and "gone.mp4 (file not found)" in message
    assert len(data.train) == 2 and data.eval_size == 1


def test_no_readable_video_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "data" / "walk").mkdir(parents=True)
    (tmp_path / "data" / "walk" / "bad.mp4").write_bytes(b"\0" * 100)
    with pytest.warns(V.SkippedVideosWarning), pytest.raises(UserError, match=r"data: no readable videos"):
        V.video_clip_data(tmp_path / "data", frames=4, size=28, cache_dir=tmp_path / "c", num_workers=0)
    with pytest.raises(UserError, match="resize_to: the short side"):
        V.video_clip_data(tmp_path / "data", frames=4, size=28, resize_to=20)


def test_video_clip_data_batches(videos: Path, tmp_path: Path) -> None:
    data = V.video_clip_data(videos, frames=4, size=28, cache_dir=tmp_path, num_workers=0, val_fraction=0.3)
    assert data.class_names == ["jump", "walk"] and data.num_classes == 2
    assert (len(data.train), data.eval_size) == (4, 2)  # one video of each class held out
    cpu = torch.device("cpu")

    def first(seed: int, n: int = 3, d: V.VideoClipData = data) -> list[tuple[torch.Tensor, torch.Tensor]]:
        it = d.train_batches(3, seed=seed, device=cpu)
        return [next(it) for _ in range(n)]  # 9 clips: crosses two epochs of 4

    a, b, c = first(0), first(0), first(1)
    x, y = a[0]
    assert x.shape == (3, 3, 4, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert -3 < float(x.min()) and float(x.max()) < 3
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert not all(torch.equal(p[0], q[0]) for p, q in zip(a, c))
    evals = [list(data.eval_batches(4, device=cpu)) for _ in range(2)]
    assert sum(len(yb) for _, yb in evals[0]) == 2
    assert all(torch.equal(p[0], q[0]) for p, q in zip(*evals))
    # a worker process makes the same batches as the main process
    data.num_workers = 1
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, first(0)))
    d = data.describe()
    assert d["data"] == "video" and d["eval_clips"] == 2 and d["decode"]["short_side"] == 32


# ---------------------------------------------------------------------------------------
# The decoded-clip cache


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = V.decode_video

    def counting(item: V.VideoItem, spec: V.DecodeSpec, **kw: int) -> np.ndarray:
        calls.append(item.path)
        return real(item, spec, **kw)

    monkeypatch.setattr(V.sources, "decode_video", counting)  # where cache_videos looks it up
    return calls


def test_cache_built_once_reused_and_equal_to_decoding(
    videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_decodes(monkeypatch)
    vl = V.scan_videos(videos)
    first = V.cache_videos(vl, SPEC, tmp_path, workers=2)
    assert first.built and len(calls) == len(vl)
    index_mtime = (first.cache.path / "index.json").stat().st_mtime_ns
    again = V.cache_videos(vl, SPEC, tmp_path)
    assert not again.built and len(calls) == len(vl) and again.cache.path == first.cache.path
    assert (again.cache.path / "index.json").stat().st_mtime_ns == index_mtime
    other = V.cache_videos(vl, V.DecodeSpec(short_side=40), tmp_path)  # other settings, other cache
    assert other.built and other.cache.path != first.cache.path
    cache, live = again.cache, V.DecodedVideos(vl, SPEC)
    assert list(cache.sources) == [v.path for v in vl.items] and cache.labels.tolist() == [v.label for v in vl.items]
    for i, item in enumerate(vl.items):
        assert cache.num_frames(i) == live.num_frames(i)
        np.testing.assert_array_equal(cache.read(i), V.decode_video(item, SPEC))
        n = cache.num_frames(i)
        idx = np.array([n - 3, n - 2, n - 1, n - 1])  # late frames: on-the-fly decoding seeks
        np.testing.assert_array_equal(cache.read(i, idx), live.read(i, idx))


def test_cache_folder_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(C.CACHE_ENV, str(tmp_path / "here"))
    assert C.default_cache_dir() == tmp_path / "here"
    monkeypatch.delenv(C.CACHE_ENV)
    assert C.default_cache_dir() == Path.home() / ".cache" / "placement-search" / "clips"


def test_incomplete_cache_is_never_used(videos: Path, tmp_path: Path) -> None:
    vl = V.scan_videos(videos)
    built = V.cache_videos(vl, SPEC, tmp_path).cache
    index = built.path / "index.json"
    good = index.read_text()
    index.write_text(good.replace('"complete":true', '"complete":false'))
    again = V.cache_videos(vl, SPEC, tmp_path)
    assert again.built
    with open(again.cache.path / "frames.u8", "ab") as f:  # data file of the wrong size
        f.write(b"x")
    assert V.cache_videos(vl, SPEC, tmp_path).built
    with pytest.raises(ValueError, match="not a complete"):
        C.ClipCache(tmp_path)


def _child_build(videos: str, cache_dir: str, delay: float, go: Any, out: Any, journal_s: float = 2.0) -> None:
    """Build the cache of ``videos`` in a fresh process, each decode ``delay`` s slower, the
    journal written every ``journal_s`` seconds."""
    import placement_search.data.cache as C
    import placement_search.data.video as V

    C.JOURNAL_EVERY_S = journal_s
    real = V.decode_video

    def slow(item: V.VideoItem, spec: V.DecodeSpec, **kw: int) -> np.ndarray:
        time.sleep(delay)
        return real(item, spec, **kw)

    V.sources.decode_video = slow  # where cache_videos looks it up
    go.wait()
    build = V.cache_videos(V.scan_videos(videos), SPEC, cache_dir, workers=1)
    digest = hashlib.sha256((build.cache.path / "frames.u8").read_bytes()).hexdigest()
    out.put((build.built, str(build.cache.path), digest, build.seconds))


def test_concurrent_builders_make_one_cache(videos: Path, tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_child_build, args=(str(videos), str(tmp_path), 0.1, go, out)) for _ in range(2)]
    for p in procs:
        p.start()
    time.sleep(0.2)
    go.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert sorted(built for built, *_ in results) == [False, True]  # one built ...
    assert next(seconds for built, _, _, seconds in results if not built) > 0.2  # ... the other waited for it
    assert len({path for _, path, _, _ in results}) == 1 and len({d for _, _, d, _ in results}) == 1
    cache = V.cache_videos(V.scan_videos(videos), SPEC, tmp_path)
    assert not cache.built
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [cache.cache.path.name]  # no leftovers
    vl = V.scan_videos(videos)
    for i, item in enumerate(vl.items):
        np.testing.assert_array_equal(cache.cache.read(i), V.decode_video(item, SPEC))


def test_killed_builder_is_resumed_not_redone(videos: Path, tmp_path: Path) -> None:
    """A build killed part-way is never read as a cache; the next build keeps the videos its
    journal vouches for, decodes the rest, and the result equals decoding everything anew."""
    ctx = mp.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    go.set()
    child = ctx.Process(target=_child_build, args=(str(videos), str(tmp_path), 0.5, go, out, 0.0))
    child.start()
    deadline = time.monotonic() + 60
    journal = tmp_path.glob(".*.partial/progress.jsonl")
    while not (found := list(journal)) or len(found[0].read_text().splitlines()) < 3:  # header + 2 videos
        assert time.monotonic() < deadline and child.is_alive(), "the child never recorded a finished video"
        time.sleep(0.05)
        journal = tmp_path.glob(".*.partial/progress.jsonl")
    child.kill()
    child.join()
    assert [p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith(".")] == []  # no cache yet
    vl = V.scan_videos(videos)
    name, key = V.cache_key(vl, SPEC)
    done = C.partial_progress(tmp_path, name, key)
    assert 2 <= done < len(vl)
    build = V.cache_videos(vl, SPEC, tmp_path)
    assert build.built and build.resumed == done  # the killed build's videos were kept ...
    assert not list(tmp_path.glob(".*.partial"))  # ... and its folder became the cache
    for i, item in enumerate(vl.items):  # ... and the cache is what a fresh decode gives
        np.testing.assert_array_equal(build.cache.read(i), V.decode_video(item, SPEC))
    assert C.find_cache(tmp_path, name, key) is not None


def test_resume_ignores_a_torn_journal_line(videos: Path, tmp_path: Path) -> None:
    vl = V.scan_videos(videos)
    name, key = V.cache_key(vl, SPEC)
    root, folder = C.cache_location(tmp_path, name, key)
    partial = root / f".{folder}.partial"
    partial.mkdir(parents=True)
    first = V.decode_video(vl.items[0], SPEC)
    (partial / "frames.u8").write_bytes(first.tobytes() + b"garbage beyond the journal")
    header = json.dumps({"key": folder.rsplit("-", 1)[-1], "version": C.CACHE_VERSION})
    line = json.dumps([0, list(first.shape[:3]), None])
    (partial / "progress.jsonl").write_text(f"{header}\n{line}\n[{first.nbytes}, [4")  # killed mid-line
    assert C.partial_progress(tmp_path, name, key) == 1
    build = V.cache_videos(vl, SPEC, tmp_path)
    assert build.resumed == 1
    for i, item in enumerate(vl.items):
        np.testing.assert_array_equal(build.cache.read(i), V.decode_video(item, SPEC))


def test_import_does_not_need_pyav(repo_root: Path) -> None:
    code = "import sys, placement_search, placement_search.data.video; sys.exit('av' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=repo_root).returncode == 0


# ---------------------------------------------------------------------------------------
# Horizontal flip: on, off, or with a label map (direction-sensitive classes)


def test_flip_off_never_mirrors_and_keeps_the_crops() -> None:
    frames = np.zeros((2, 32, 43, 3), np.uint8)
    frames[:, :, :21] = 200  # bright left half
    for s in range(20):
        on, flipped = V.ClipTransform(28, 32, train=True).apply(frames, np.random.default_rng(s))
        off, never = V.ClipTransform(28, 32, train=True, flip=False).apply(frames, np.random.default_rng(s))
        assert never is False
        # the same crop: unflipped where the flip was drawn, else identical
        assert torch.equal(off, on.flip(3) if flipped else on)


class _TwoClassSource:
    """A frame source of two one-frame videos whose left half is bright: label 0 and 1."""

    def __len__(self) -> int:
        return 2

    def num_frames(self, i: int) -> int:
        return 4

    def read(self, i: int, idx) -> np.ndarray:
        frames = np.zeros((len(idx), 32, 43, 3), np.uint8)
        frames[:, :, :21] = 200
        return frames

    def label(self, i: int) -> int:
        return i


def test_a_flipped_clip_takes_the_mirrored_actions_label() -> None:
    """ "Pushing left to right" flipped is "pushing right to left": with flip = "map", a clip
    the transform mirrored gets the mapped label, an unflipped one keeps its own."""
    labels = V.flip_label_map("map", {"left to right": "right to left"}, ["left to right", "right to left"])
    assert labels == {0: 1, 1: 0}  # both ways
    ds = V.VideoClipDataset(
        _TwoClassSource(), [0, 1], frames=2, stride=1, transform=V.ClipTransform(28, 32, True), flip_labels=labels
    )
    seen = set()
    for seed in range(30):
        clip, label = ds[(0, seed)]
        mirrored = bool(clip[:, :, :, -1].float().mean() > 100)  # the bright half moved right
        assert label == (1 if mirrored else 0)
        seen.add(mirrored)
    assert seen == {True, False}


@pytest.mark.parametrize(
    "flip, flip_map, message",
    [
        ("sideways", None, "flip: expected one of on, off, map"),
        ("map", None, 'flip = "map" needs flip_map'),
        ("on", {"a": "b"}, 'only used with flip = "map"'),
        ("map", {"a": "zzz"}, "unknown class 'zzz'"),
        ("map", {"a": "b", "c": "a"}, "class 'a' is mapped to two classes"),
        ("map", {"a": 3}, "expected a JSON object of class names"),
    ],
)
def test_bad_flip_settings_name_the_problem(flip, flip_map, message) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        V.flip_label_map(flip, flip_map, ["a", "b", "c"])


def test_flip_map_from_a_json_file_and_in_a_study_file(tmp_path: Path, videos: Path) -> None:
    from placement_search.data.config import DataConfig

    path = tmp_path / "flip.json"
    path.write_text(json.dumps({"walk": "jump"}))
    assert V.flip_label_map("map", path, ["jump", "walk"]) == {1: 0, 0: 1}
    cfg = DataConfig(source=str(videos), frames=4, size=28, flip="map", flip_map=str(path))
    cfg.check("[data]")
    with pytest.raises(UserError, match=r"\[data\]\.flip_map: give it exactly when"):
        DataConfig(source=str(videos), frames=4, size=28, flip="map").check("[data]")
    with pytest.raises(UserError, match="synthetic benchmark does not flip"):
        DataConfig(flip="off").check("[data]")
