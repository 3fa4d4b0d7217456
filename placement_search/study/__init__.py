"""Multi-objective placement search: study files, the Optuna/Ray driver, storage views.

from placement_search.study import load_study_config, SearchDriver
cfg = load_study_config("studies/quickstart.toml")
result = SearchDriver(cfg).run()              # or: placement-search run studies/quickstart.toml

# with live optuna-dashboard figures, as ``placement-search run`` does:
from placement_search.inspect.figures import push_dashboard_figures
SearchDriver(cfg, publish_figures=push_dashboard_figures).run()
"""

from .config import DEFAULT_STORAGE, StudyConfig, load_study_config
from .driver import RunResult, SearchDriver, canonical_key
from .early_stop import Reference, should_stop
from .storage import open_storage, pareto_rows, study_status, study_summaries

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
