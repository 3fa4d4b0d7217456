"""Analyses of trained models (kept as an import path; the code lives in :mod:`placement_search.inspect.temporal`).

from placement_search.analysis import analyze_temporal, render_table
analysis = analyze_temporal("export_dir")     # or: placement-search analyze temporal export_dir
print(render_table(analysis))
"""

from ..inspect.temporal import (
    LoadedWeights,
    TemporalAnalysis,
    TemporalKernel,
    analyze_temporal,
    check_output_path,
    load_weights,
    natural_key,
    render_figure,
    render_table,
    temporal_kernels,
    write_output,
)

__all__ = [
    "LoadedWeights",
    "TemporalAnalysis",
    "TemporalKernel",
    "analyze_temporal",
    "check_output_path",
    "load_weights",
    "natural_key",
    "render_figure",
    "render_table",
    "temporal_kernels",
    "write_output",
]
