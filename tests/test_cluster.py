"""The shared Dask client (had/cluster.py): local CPU workers, a clear error for a bad --scheduler, cleanup."""
import pytest

from had import cluster
from had.errors import HadError


def test_local_workers_run_tasks_and_are_closed_on_exit():
    with cluster.dask_client(None, 2) as (client, gpu_slots):
        assert not gpu_slots
        assert len(client.scheduler_info()["workers"]) == 2
        assert client.submit(pow, 3, 4).result() == 81
    assert client.status == "closed"


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:1", "nonsense"])
def test_an_unreachable_scheduler_names_the_option_and_what_is_kept(address, monkeypatch):
    monkeypatch.setattr(cluster, "SCHEDULER_TIMEOUT_S", 1)
    with pytest.raises(HadError, match=f"^--scheduler {address}: cannot connect to a Dask scheduler .*; shards kept$"):
        with cluster.dask_client(address, 0, kept="shards kept"):
            pass


def test_an_existing_scheduler_reports_its_gpu_slots():
    from distributed import LocalCluster

    for resources, slots in ((None, False), ({"GPU": 2}, True)):
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0",
                          resources=resources) as local:
            with cluster.dask_client(local.scheduler_address, 0) as (client, gpu_slots):
                assert gpu_slots == slots
            assert client.status == "closed" and local.status.name == "running"  # not ours to close
