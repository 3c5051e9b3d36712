"""In-memory `CacheItem`s (had/cache_store/item.py), for tests without a cache.

Tokens, spans and masks come from the real NTv2 tokenizer and grouping mask; the teacher features
are a fixed random embedding of each visible token's id, so the distillation target is learnable.
"""
from __future__ import annotations

import numpy as np

from had.cache_store import CacheItem
from had.config import MaskConfig
from had.featurize import masked_item
from had.data.tokenizer import NTv2Tokenizer

TINY_STUDENT = dict(d_model=32, n_gdn_layers=2, n_heads=2, head_dim=16, mlp_hidden=64, attn_heads=2,
                    decoder_heads=2, conv_size=4, gdn_impl="torch")


class FakeCache:
    """len() window-views of `window` nt whose teacher features have `teacher_dim` dims."""

    def __init__(self, n_items: int = 32, window: int = 64, teacher_dim: int = 24, seed: int = 0,
                 n_fraction: float = 0.02, tok=None):
        self.tok = tok or NTv2Tokenizer.default()  # or any TeacherTokenizer (variable-length spans)
        rng = np.random.default_rng(seed)
        self.table = rng.standard_normal((self.tok.vocab_size, teacher_dim)).astype(np.float32)
        self.seqs = rng.integers(0, 4, size=(n_items, window)).astype(np.uint8)
        self.seqs[rng.random((n_items, window)) < n_fraction] = 4  # some N: single-nt teacher tokens
        self.manifest = {"teacher_dim": teacher_dim, "window": window, "vocab_hash": self.tok.vocab_hash,
                         "teacher": "fake", "layer": -1, "feature_dtype": "fp32", "n_items": n_items}
        self.seed = seed

    def __len__(self) -> int:
        return len(self.seqs)

    def __getitem__(self, i: int) -> CacheItem:
        nuc = self.seqs[i]
        ids, spans = self.tok.tokenize(nuc)
        item = masked_item(nuc, ids, spans, self.tok, MaskConfig(ratio=0.15, seed=self.seed), i, 0)
        item.features = self.table[ids[~item.token_masked]]
        return item


def write_cache(path, cache: FakeCache, shard_items: int = 8, feature_dtype: str = "fp16") -> str:
    """Write `cache`'s items as a real on-disk cache with had.cache_store (the writer's own calls)."""
    from had.cache_store import Layout, Storage
    from had.cache_store.writer import write_cache

    layout = Layout(n_items=len(cache), window=cache.manifest["window"], teacher_dim=cache.manifest["teacher_dim"],
                    feature_dtype=feature_dtype, shard_items=shard_items)
    identity = {**cache.manifest, "feature_dtype": feature_dtype, "layout": layout.to_dict()}
    write_cache(Storage(str(path)), layout, identity, cache)
    return str(path)
