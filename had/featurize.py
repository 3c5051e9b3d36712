"""Teacher featurisation of one cache shard: window-views -> items -> token-budget batches -> features.

    job = ShardJob(...)                      # one shard: its windows, teacher and mask settings
    record = compute_shard(job)              # fetch, tokenize, mask, run the teacher, write, commit

or step by step (what `had cache-teacher`'s in-process runner overlaps in threads):

    teacher = teacher_for(job.teacher)       # loaded once per process
    items, ids = prepare_items(job, teacher) # CacheItems without features, the teacher's input ids beside them
    compute_features(items, ids, teacher, layer, max_tokens)
    write(storage, job, items, numerics(teacher, job))

Runs in the driver or in a Dask worker process: everything here is a function of the job.
"""
from __future__ import annotations

import dataclasses
import json
import threading
from dataclasses import dataclass

import numpy as np
import torch

from had.cache_store import CacheItem, Layout, Storage, read_commit, write_shard
from had.config import MaskConfig, TeacherConfig
from had.data import alphabet
from had.data.fasta import FastaFile
from had.data.masking import grouping_mask
from had.data.padding import pad_rows
from had.data.tokenizer_base import TeacherTokenizer
from had.errors import HadError
from had.teacher import Teacher, absolute_local, load_teacher


@dataclass
class ShardJob:
    """Everything a worker needs for one shard (small and picklable)."""

    url: str
    layout: Layout
    teacher: TeacherConfig  # device and dtype resolved (they decide the values)
    mask: MaskConfig
    fasta: str
    contigs: tuple[str, ...]
    window_id: np.ndarray  # int64 [n_windows of the shard]
    contig: np.ndarray
    start: np.ndarray
    first_window: int  # global index of the shard's first window
    shard: int

    def for_workers(self) -> ShardJob:
        """The job with its local paths absolute: a worker of an existing cluster runs in its own directory."""
        teacher = dataclasses.replace(self.teacher, model=absolute_local(self.teacher.model))
        return dataclasses.replace(self, url=absolute_local(self.url), fasta=absolute_local(self.fasta), teacher=teacher)


_TEACHERS: dict[str, Teacher] = {}
_FASTAS: dict[str, FastaFile] = {}
# A Dask GPU worker runs two shard tasks in threads: one teacher per process, loaded once,
# whose forwards take turns (two at once would only compete for the GPU and its memory).
_LOADING, FORWARD = threading.Lock(), threading.Lock()


def teacher_for(tcfg: TeacherConfig) -> Teacher:
    """The teacher for this config, loaded once per process."""
    key = json.dumps(dataclasses.asdict(tcfg), sort_keys=True)
    with _LOADING:
        if key not in _TEACHERS:
            _TEACHERS[key] = load_teacher(tcfg.model, tcfg.trust_remote_code, tcfg.dtype, tcfg.device,
                                          tcfg.tokenizer, tcfg.cpu_threads)
    return _TEACHERS[key]


def fasta_file(path: str) -> FastaFile:
    """The indexed FASTA at path, opened once per process."""
    if path not in _FASTAS:
        _FASTAS[path] = FastaFile(path)
    return _FASTAS[path]


def prepare_items(job: ShardJob, teacher: Teacher) -> tuple[list[CacheItem], list[np.ndarray]]:
    """Fetch, tokenize and mask the shard's window-views -> their items (no features yet) and the teacher's
    input ids of each, int64 [n + specials]."""
    fasta, tok, mask = fasta_file(job.fasta), teacher.tokenizer, job.mask
    n_views = mask.views * (2 if mask.reverse_complement else 1)
    views, cached = [], {}
    for i in job.layout.shard_range(job.shard):
        w, view = divmod(i, n_views)
        r = w - job.first_window
        if r not in cached:
            cached = {r: fasta.fetch(job.contigs[job.contig[r]], int(job.start[r]), int(job.start[r]) + job.layout.window)}
        views.append((r, view, alphabet.reverse_complement(cached[r]) if view >= mask.views else cached[r]))
    items, input_ids = [], []
    for (r, view, codes), (ids, spans) in zip(views, tok.tokenize_batch([codes for _, _, codes in views])):
        if teacher.max_tokens is not None and len(ids) + tok.n_specials > teacher.max_tokens:
            raise HadError(f"window {job.contigs[job.contig[r]]}:{job.start[r]} has {len(ids) + tok.n_specials} "
                           f"teacher tokens, more than {teacher.name} takes ({teacher.max_tokens}); "
                           "lower genome.max_n_fraction or genome.window")
        item = masked_item(codes, ids, spans, tok, mask, int(job.window_id[r]), view)
        shown = np.where(item.token_masked, tok.mask_id, ids) if mask.teacher_input == "masked" else ids
        items.append(item)
        input_ids.append(tok.input_ids(shown))
    return items, input_ids


def masked_item(codes: np.ndarray, ids: np.ndarray, spans: np.ndarray, tok: TeacherTokenizer, mask: MaskConfig,
                window_id: int, view: int) -> CacheItem:
    """The item of one tokenized window-view (codes uint8 [L], ids and spans [n] / [n, 2] from tok.tokenize)
    with its grouping mask; features not yet computed."""
    token_masked, nt_mask = grouping_mask(tok.maskable(ids), spans, len(codes), mask.ratio, mask.seed,
                                          window_id, view, mask.span_tokens)
    return CacheItem(codes, nt_mask, spans, token_masked)


def batches(lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Group item indices, sorted by length, so each padded batch has at most max_tokens tokens."""
    out, current, width = [], [], 0
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if current and max(width, lengths[i]) * (len(current) + 1) > max_tokens:
            out.append(current)
            current, width = [], 0
        current.append(i)
        width = max(width, lengths[i])
    return out + [current] if current else out


def pad_batch(input_ids: list[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad input ids: -> input_ids, attention_mask, both int64 [B, T]. Right even for a teacher whose
    tokenizer pads left (HyenaDNA): its windows all have the same token count, so nothing is padded."""
    ids, attn = pad_rows(input_ids, pad_id)
    return torch.from_numpy(ids), torch.from_numpy(attn)


def compute_features(items: list[CacheItem], input_ids: list[np.ndarray], teacher: Teacher, layer: int,
                     max_tokens: int) -> None:
    """Run the teacher on each item's input ids; sets item.features = float32 [n_vis, D], the visible
    tokens' rows in order."""
    first = len(teacher.tokenizer.prefix_ids)  # row of the first sequence token
    for batch in batches([len(ids) for ids in input_ids], max_tokens):
        ids, attn = pad_batch([input_ids[i] for i in batch], teacher.tokenizer.pad_id)
        # pick the visible rows on the device: the host then copies and converts only what is kept
        # (no specials, no padding, no masked tokens), about 85% of the padded batch's rows
        visible = torch.zeros(ids.shape, dtype=torch.bool)
        for row, i in enumerate(batch):
            visible[row, first: first + len(items[i].spans)] = torch.from_numpy(~items[i].token_masked)
        feats = teacher.features(ids, attn, layer)
        rows = feats[visible.to(feats.device)].float().cpu().numpy()
        counts = visible.sum(1).tolist()
        for i, part in zip(batch, np.split(rows, np.cumsum(counts)[:-1])):
            items[i].features = part


def numerics(teacher: Teacher, job: ShardJob) -> dict:
    """What decides a shard's feature bits beyond its identity (FORMAT.md, "Determinism"): the teacher's
    numerics and the batch size in tokens (it sets the padded shapes the kernels see)."""
    return teacher.numerics() | {"batch_tokens": job.teacher.max_tokens_per_batch}


def write(storage: Storage, job: ShardJob, items: list[CacheItem], numerics: dict) -> dict:
    """Write and commit the shard's items; a full disk (or any OSError) is a HadError that keeps the rest."""
    try:
        return write_shard(storage, job.layout, job.shard, items, numerics)
    except OSError as e:
        raise HadError(f"writing shard {job.shard} to {job.url} failed: {e}; committed shards are kept, "
                       "re-run the same command to resume") from e


def compute_shard(job: ShardJob) -> dict:
    """Dask task: compute and write one shard; returns its commit record (idempotent)."""
    storage = Storage(job.url)
    record = read_commit(storage, job.shard)
    if record is not None:
        return record
    teacher = teacher_for(job.teacher)
    items, input_ids = prepare_items(job, teacher)
    with FORWARD:
        compute_features(items, input_ids, teacher, job.teacher.layer, job.teacher.max_tokens_per_batch)
    return write(storage, job, items, numerics(teacher, job))
