"""Real video for the proxy trainer: finding the videos, decoding, clip sampling, transforms.

The layouts people already have (see ``docs/data.md``)::

    train/                          train.txt                     train.csv
      abseiling/                      abseiling/a1.mp4 abseiling    path,label,start,end
        a1.mp4                        clips/b7.mp4 3                x/a1.mp4,abseiling,0.0,10.0
        a2.mp4                        frames/a1 300 0
      air_drumming/                   (path label, or mmaction2's   (Kinetics style; start/end
        b7.mp4                         path num_frames label)        in seconds, optional)

Frame folders (mmaction2 rawframes, ``a1/img_00001.jpg ...``) can stand in for video
files in both. Each video is decoded once to a fixed frame rate (``fps``, default 12) and
a proxy resolution (short side ``round(size * 256 / 224)``), at most ``max_frames`` frames
around its middle; normally into the decoded-clip cache (:mod:`placement_search.data.cache`), which every trial
on the machine then reads. A clip is ``frames`` of those frames ``stride`` apart: a random
start for training, the centre for evaluation; then a random (training) or centre crop,
a random horizontal flip (training), and normalisation with Kinetics' mean and std, done
on the training device on the whole batch.

Entry point: :func:`video_clip_data`. Lists for Mini-Kinetics-style subsets:
:func:`make_subset`.

The modules, one job each: :mod:`.index` (finding the videos, list files), :mod:`.decode`
(decoding one video), :mod:`.sources` (the cache, or decoding on every read),
:mod:`.transforms` (crops, flips, normalisation), :mod:`.clips` (clip sampling, the torch
data set), :mod:`.clip_data` (:func:`video_clip_data`) and :mod:`.subset` (hold-out splits,
subset lists). Everything public is importable from this package.
"""

from __future__ import annotations

from .clip_data import FLIPS, VideoClipData, flip_label_map, video_clip_data
from .clip_data import default_num_workers as default_num_workers
from .clips import EpochShuffleSampler, SkippedVideosWarning, VideoClipDataset, sample_clip
from .clips import Pad as Pad
from .decode import DecodeSpec, FramePlan, VideoReadError, decode_video, plan_video, read_frames
from .index import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoItem, VideoList, scan_videos, write_video_list
from .index import LAYOUT_HELP as LAYOUT_HELP
from .sources import DecodedVideos, FrameSource, cache_key, cache_videos
from .subset import Subset, holdout_split, make_subset
from .transforms import (
    KINETICS_MEAN,
    KINETICS_STD,
    ClipTransform,
    center_crop,
    default_resize,
    hflip,
    normalize,
    random_crop,
    resize_short_side,
    to_cthw,
)

# also importable from here, as before the split, but not in __all__: default_num_workers, LAYOUT_HELP, Pad
__all__ = [
    "FLIPS",
    "IMAGE_EXTENSIONS",
    "KINETICS_MEAN",
    "KINETICS_STD",
    "VIDEO_EXTENSIONS",
    "ClipTransform",
    "DecodeSpec",
    "DecodedVideos",
    "EpochShuffleSampler",
    "FramePlan",
    "FrameSource",
    "SkippedVideosWarning",
    "Subset",
    "VideoClipData",
    "VideoClipDataset",
    "VideoItem",
    "VideoList",
    "VideoReadError",
    "cache_key",
    "cache_videos",
    "center_crop",
    "decode_video",
    "default_resize",
    "flip_label_map",
    "hflip",
    "holdout_split",
    "make_subset",
    "normalize",
    "plan_video",
    "random_crop",
    "read_frames",
    "resize_short_side",
    "sample_clip",
    "scan_videos",
    "to_cthw",
    "video_clip_data",
    "write_video_list",
]
