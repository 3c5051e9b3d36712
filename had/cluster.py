"""The Dask client behind `had cache-teacher` and `had eval`: an existing scheduler, or a local cluster.

    with dask_client(scheduler, workers, gpus, kept="committed shards are kept") as (client, gpu_slots):
        futures = client.map(task, jobs, resources={"GPU": 1} if gpu_slots else None)

An existing scheduler is reached within SCHEDULER_TIMEOUT_S or the run ends with a one-line HadError
naming --scheduler. Without one: with gpus > 0, one worker process per GPU (pinned by
CUDA_VISIBLE_DEVICES) with GPU_SLOTS threads and as many "GPU" resource slots; else `workers`
single-threaded CPU worker processes. The client and any cluster it started are closed on exit.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager

import torch

from had.errors import HadError

SCHEDULER_TIMEOUT_S = 15  # connecting to --scheduler: long enough for a busy scheduler, short for a typo
GPU_SLOTS = 2  # tasks per GPU worker: one on the GPU while the other prepares or writes
ALLOWED_FAILURES = 3  # a task that kills its worker this many times fails the run instead of killing workers forever


def gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@contextmanager
def dask_client(scheduler: str | None, workers: int, gpus: int = 0, kept: str = ""):
    """Yield (client, whether its workers have GPU slots); `kept` ends the connect error (what survives)."""
    import dask
    from distributed import Client, LocalCluster

    dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES})
    if scheduler:
        try:
            client, cluster = Client(scheduler, timeout=SCHEDULER_TIMEOUT_S), None
        except (OSError, ValueError) as e:  # OSError includes the connect timeout
            raise HadError(f"--scheduler {scheduler}: cannot connect to a Dask scheduler ({e})"
                           + (f"; {kept}" if kept else "")) from None
        use_gpu = any("GPU" in w.get("resources", {}) for w in client.scheduler_info()["workers"].values())
    elif gpus:
        cluster, use_gpu = _gpu_cluster(range(gpus)), True
        client = Client(cluster)
    else:
        cluster = LocalCluster(n_workers=workers or 1, threads_per_worker=1, processes=True,
                               dashboard_address=":0", memory_limit=0)
        client, use_gpu = Client(cluster), False
    try:
        yield client, use_gpu
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def dashboard_note(client) -> str | None:
    """The dashboard's address when bokeh (which serves it) is installed."""
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return None
    return f"Dask dashboard: {client.dashboard_link}"


def _gpu_cluster(gpus):
    """LocalCluster with one worker process per GPU (pinned by CUDA_VISIBLE_DEVICES), GPU_SLOTS threads."""
    from distributed import LocalCluster

    class GPUCluster(LocalCluster):
        def __init__(self, gpus):
            self._gpus = list(gpus)
            super().__init__(n_workers=0, processes=True, threads_per_worker=GPU_SLOTS,
                             dashboard_address=":0", memory_limit=0)
            self.scale(len(self._gpus))

        def new_worker_spec(self):
            name = min(set(self._gpus) - set(self.worker_spec))
            spec = copy.deepcopy(self.new_spec)
            spec["options"].update(env={"CUDA_VISIBLE_DEVICES": str(name)}, resources={"GPU": GPU_SLOTS}, name=name)
            return {name: spec}

    return GPUCluster(gpus)
