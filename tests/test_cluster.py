"""A study across a real multi-node Ray cluster on this machine, with a node killed and a node
added mid-study (``ray.cluster_utils.Cluster``: one raylet per node, each with its own
resources, on loopback)."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import ray.cloudpickle
from optuna.trial import TrialState
from search_helpers import init_local_ray, sqlite_url, write_study
from test_search_driver import instant_trial

from placement_search.study import SearchDriver, load_study_config
from placement_search.study.records import trial_attrs

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

#: where a running trial leaves a marker named by its node (so the test kills a busy node)
MARKERS = Path(tempfile.gettempdir()) / "placement-search-cluster-test"


def node_trial(spec):
    """:func:`instant_trial`'s result after about 1.5 s, saying which Ray node ran it."""
    import ray as _ray

    node = _ray.get_runtime_context().get_node_id()
    marker = MARKERS / f"{node}.{spec['placement_string'].replace(' ', '_')}"
    marker.touch()
    yield {"event": "started", "host": "cluster-test", "pid": 0, "device": "cpu", "node": node}
    time.sleep(1.5)
    marker.unlink(missing_ok=True)
    yield from (e for e in instant_trial(spec) if e["event"] != "started")


@pytest.fixture()
def cluster():
    from ray.cluster_utils import Cluster

    shared = ray.is_initialized()
    if shared:  # the other tests' local instance: this test needs its own cluster, then gives it back
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [c.add_node(num_cpus=1), c.add_node(num_cpus=1)]
    c.wait_for_nodes()
    yield c, nodes
    if ray.is_initialized():
        ray.shutdown()
    c.shutdown()
    if shared:
        init_local_ray()


def test_study_across_nodes_survives_a_killed_node_and_uses_a_new_one(tmp_path, cluster, monkeypatch):
    from placement_search.study import driver as driver_mod

    c, (n1, n2) = cluster
    monkeypatch.setattr(driver_mod, "SLOTS_EVERY_S", 0.5)
    url = sqlite_url(tmp_path)
    cfg = load_study_config(write_study(tmp_path, trials=12))
    ended: list[int] = []
    added: list = []
    events: list[tuple[str, dict]] = []

    import shutil

    shutil.rmtree(MARKERS, ignore_errors=True)
    MARKERS.mkdir()
    killed: list[bool] = []

    def on_event(kind, info):
        events.append((kind, info))
        if kind == "end_trial":
            ended.append(info["number"])
            if len(ended) == 6 and killed:  # a node joins
                added.append(c.add_node(num_cpus=1))
        # a worker node dies while a trial runs on it
        if len(ended) >= 2 and not killed and any(MARKERS.glob(f"{n2.node_id}.*")):
            killed.append(True)
            c.remove_node(n2, allow_graceful=False)

    try:
        r = SearchDriver(cfg, storage=url, ray_address=c.address, trial_fn=node_trial, on_event=on_event).run()
    finally:
        shutil.rmtree(MARKERS, ignore_errors=True)
    assert killed
    assert r.stop_reason.startswith("reached 12")
    st = optuna.load_study(study_name="small", storage=optuna.storages.RDBStorage(url))
    assert not [t for t in st.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    ok = [t for t in st.trials if trial_attrs(t).get("status") == "ok"]
    statuses = [(t.number, trial_attrs(t).get("status"), trial_attrs(t).get("reason")) for t in st.trials]
    assert len(ok) + sum(1 for t in st.trials if trial_attrs(t).get("status") == "worker_died") == 12, statuses
    nodes = [trial_attrs(t).get("node") for t in sorted(ok, key=lambda t: t.number)]
    assert n1.node_id in nodes and n2.node_id in nodes, nodes  # trials ran on both first nodes
    assert added and added[0].node_id in nodes, (nodes, [i for k, i in events if k == "slots"])  # and the new one
    # the killed node's trials: retried on another node (attempts) or recorded, never lost
    assert any(k == "retry" for k, _ in events), statuses
    retried = [t for t in ok if (trial_attrs(t).get("attempts") or 1) > 1]
    assert retried and all(trial_attrs(t)["node"] != n2.node_id for t in retried)
    # the slots followed the cluster: down when the node died, up when one joined (in the order
    # Ray noticed them: a dead node is seen late, after its heartbeats time out)
    changes = [(i["from"], i["to"]) for k, i in events if k == "slots"]
    assert any(b < a for a, b in changes) and any(b > a for a, b in changes), changes
    # every node was checked before its first trial: the first ones at start, the new one as it joined
    checks = [[n["node"] for n in i["nodes"]] for k, i in events if k == "nodes"]
    assert {n1.node_id, n2.node_id} <= set(checks[0]), checks
    assert added[0].node_id in {n for c in checks[1:] for n in c}, checks
    first_on_new = min(
        i
        for i, (k, info) in enumerate(events)
        if k == "end_trial"
        and info["number"] in [t.number for t in ok if trial_attrs(t).get("node") == added[0].node_id]
    )
    new_check = min(
        i
        for i, (k, info) in enumerate(events)
        if k == "nodes" and added[0].node_id in [n["node"] for n in info["nodes"]]
    )
    assert new_check < first_on_new


def test_cache_build_on_every_node_of_a_cluster_builds_a_shared_cache_once(tmp_path, cluster, capsys):
    """`cache build` with a cluster: each node checks its cache; the first that lacks it builds it
    into the folder they share, the others then find it; the search's node check agrees."""
    from test_data_on_nodes import _video_study, _write_video

    from placement_search.cli import main

    c, (n1, n2) = cluster
    videos = tmp_path / "videos"
    for k, name in enumerate(("left", "right")):
        (videos / name).mkdir(parents=True)
        for i in range(3):
            _write_video(videos / name / f"{name}{i}.mp4", 16, 40 * k + 10 * i)
    toml = _video_study(tmp_path, videos, tmp_path / "shared-cache")
    assert main(["cache", "status", str(toml), "--ray-address", c.address, "--json"]) == 1
    before = json.loads(capsys.readouterr().out)
    assert {n1.node_id, n2.node_id} <= {n["node"] for n in before["nodes"]}
    assert not any(ch["ready"] for n in before["nodes"] for ch in n["caches"])
    assert main(["cache", "build", str(toml), "--ray-address", c.address, "--json"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["ready"] and len(after["nodes"]) == len(before["nodes"])
    built = [n for n in after["nodes"] if n["built_s"] > 0]
    assert len(built) == 1  # one node decoded the videos; the others found the shared cache
    assert len({ch["path"] for n in after["nodes"] for ch in n["caches"]}) == 1
    assert main(["cache", "status", str(toml), "--ray-address", c.address]) == 0
