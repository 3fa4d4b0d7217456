"""Backbones, built only from a placement. See :class:`~._base.Backbone`."""

from ._base import BACKBONES, Backbone, Link, PositionInfo, get_backbone, parse_args, register_backbone
from .inception import InceptionArgs, InceptionBackbone
from .resnet import ResNetArgs, ResNetBackbone, TinyArgs, TinyBackbone

__all__ = [
    "BACKBONES",
    "Backbone",
    "InceptionArgs",
    "InceptionBackbone",
    "Link",
    "PositionInfo",
    "ResNetArgs",
    "ResNetBackbone",
    "TinyArgs",
    "TinyBackbone",
    "get_backbone",
    "parse_args",
    "register_backbone",
]
