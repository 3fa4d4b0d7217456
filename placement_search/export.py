"""The import path of earlier releases for exporting: architecture I/O now lives in
:mod:`placement_search.architecture`, writing folders from a study in :mod:`placement_search.inspect.export`.
"""

from .architecture import (
    ARCH_FILE,
    ARCH_FORMAT,
    ARCH_SCHEMA_VERSION,
    Architecture,
    load_architecture,
    model_card,
    parse_architecture,
    read_architecture,
)
from .inspect.export import FORMATS, ExportedArchitecture, export_study, parse_formats

__all__ = [
    "ARCH_FILE",
    "ARCH_FORMAT",
    "ARCH_SCHEMA_VERSION",
    "FORMATS",
    "Architecture",
    "ExportedArchitecture",
    "export_study",
    "load_architecture",
    "model_card",
    "parse_architecture",
    "parse_formats",
    "read_architecture",
]
