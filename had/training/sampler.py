"""The data side of the training loop: which items each optimizer step reads, and the DataLoader.

The data order is a pure function of (seed, step): every optimizer step reads global-batch slice
`step` of an endless stream of seeded per-epoch permutations, rank r taking its contiguous share.
A checkpoint therefore only needs the step to put the data loader back where it was.
"""
from __future__ import annotations

import signal
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from had.config import TrainConfig
from had.student import collate_cache_items


class StepBatchSampler(Sampler):
    """Micro-batches of item indices for optimizer steps [start_step, steps), deterministic in the seed.

    The global stream is the concatenation of per-epoch permutations (np.random.default_rng([seed,
    epoch])); step s takes stream[s*G : (s+1)*G], rank r its r-th contiguous share, split into
    micro-batches. Independent of worker count and of where a run was resumed.
    """

    def __init__(self, n_items: int, global_batch: int, micro: int, rank: int, world: int,
                 seed: int, start_step: int, steps: int):
        self.n, self.g, self.micro, self.rank, self.world = n_items, global_batch, micro, rank, world
        self.seed, self.start, self.steps = seed, start_step, steps
        self._epoch, self._perm = -1, None

    def __len__(self) -> int:
        return (self.steps - self.start) * (self.g // self.world // self.micro)

    def __iter__(self):
        share = self.g // self.world
        for step in range(self.start, self.steps):
            begin = step * self.g + self.rank * share
            idx = self._stream(begin, begin + share)
            for m in range(0, share, self.micro):
                yield idx[m : m + self.micro].tolist()

    def _stream(self, begin: int, end: int) -> np.ndarray:
        parts = []
        while begin < end:
            epoch, offset = divmod(begin, self.n)
            if epoch != self._epoch:
                self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n)
            take = min(end - begin, self.n - offset)
            parts.append(self._perm[offset : offset + take])
            begin += take
        return np.concatenate(parts)


def make_loader(reader, tc: TrainConfig, rank: int, world: int, start_step: int, device: torch.device) -> DataLoader:
    """Collated micro-batches (`collate_cache_items`) of `reader`'s items for steps [start_step, tc.steps)."""
    sampler = StepBatchSampler(len(reader), tc.batch_size, tc.micro_batch_size, rank, world,
                               tc.seed, start_step, tc.steps)
    return DataLoader(
        reader, batch_sampler=sampler, collate_fn=collate_cache_items, num_workers=tc.num_workers,
        pin_memory=device.type == "cuda", prefetch_factor=4 if tc.num_workers else None,
        persistent_workers=tc.num_workers > 0, worker_init_fn=_ignore_stop_signals,
    )


@contextmanager
def batches(loader: DataLoader):
    """The loader's iterator; its workers are shut down however the loop ends.

    Left to garbage collection, an exception's traceback keeps the iterator alive until interpreter
    exit, where torch no longer shuts workers down and multiprocessing's exit-time join waits forever
    on workers that ignore its SIGTERM (`_ignore_stop_signals`): the error is printed, the process hangs.
    """
    it = iter(loader)
    try:
        yield it
    finally:
        if hasattr(it, "_shutdown_workers"):  # num_workers > 0 (torch's own shutdown, private API)
            it._shutdown_workers()


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers get Ctrl-C (and SLURM's SIGTERM) too; the main process decides when to stop,
    so a worker must not die mid-step. Workers still exit when the main process ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
