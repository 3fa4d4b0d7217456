"""The import path of earlier releases for :mod:`placement_search.study` (what runs a search).

Scripts that ``from placement_search.search import SearchDriver, load_study_config`` keep working;
new code imports from :mod:`placement_search.study`.
"""

from ..study import (
    DEFAULT_STORAGE,
    Reference,
    RunResult,
    SearchDriver,
    StudyConfig,
    canonical_key,
    load_study_config,
    open_storage,
    pareto_rows,
    should_stop,
    study_status,
    study_summaries,
)

__all__ = [
    "DEFAULT_STORAGE",
    "Reference",
    "RunResult",
    "SearchDriver",
    "StudyConfig",
    "canonical_key",
    "load_study_config",
    "open_storage",
    "pareto_rows",
    "should_stop",
    "study_status",
    "study_summaries",
]
