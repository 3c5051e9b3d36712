"""Teacher-token preparation per tokenizer family, on one core, beside the teacher forward.

    .venv/bin/python benchmarks/bench_tokenizers.py             # 2000 chr20 windows x 5 interleaved rounds
    .venv/bin/python benchmarks/bench_tokenizers.py --quick     # 300 windows x 3 rounds, no forward

Preparation is what `had cache-teacher` does per shard of window-views before the forward:
tokenize the codes (`tokenize_batch`: BPE in one call of HF's `encode_batch_fast`), draw the
grouping mask (ratio 0.15), build the teacher input with its mask token (`prepare`). One core:
RAYON_NUM_THREADS=1 (in a real run HF's thread pool uses every core for the BPE family). Families, each from real or published tokenizer files:
- kmer: NTv2's files shipped with had (the fast path, the reference of the ratio);
- bpe: DNABERT-2's tokenizer.json (../shared/reference/dnabert2);
- char: a HyenaDNA-style single-nucleotide tokenizer (tests/dna_teachers.py), and with
  `span_tokens=6` (contiguous 6-nt span masking);
- "bpe: HF encode alone": HF's `encode_batch_fast` of the same text alone, the floor of the bpe
  family's cost.
Rounds interleave the families so that load from other jobs hits all of them alike; the table
gives the median windows/s and the ratio to the k-mer path of the same round (goal >= 0.5).
The forward columns: teachers of the published shapes with random weights (NTv2-100M as a
built-in ESM, DNABERT-2 as a 12 x 768 BERT with learned positions, not ALiBi), fp32, one thread,
on a few windows: windows/s of the forward alone.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # the HF tokenizer's thread pool: one core
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from had.config import MaskConfig  # noqa: E402
from had.data import alphabet  # noqa: E402
from had.data.tokenizer import NTv2Tokenizer  # noqa: E402
from had.data.tokenizer_load import load_tokenizer  # noqa: E402
from had.featurize import masked_item  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared"
CHR20 = SHARED / "data" / "real" / "genome" / "chr20_1mb_grch37.fa"
WINDOW = 1024
SHARD = 256  # window-views per shard (the had-1.1m preset's cache.shard_windows)


def prepare(tok, shard: list[np.ndarray], span_tokens: int = 1) -> list[np.ndarray]:
    """What featurize.prepare_items does for a shard of window-views, without the FASTA fetch."""
    mask, out = MaskConfig(ratio=0.15, seed=0, span_tokens=span_tokens), []
    for i, (codes, (ids, spans)) in enumerate(zip(shard, tok.tokenize_batch(shard))):
        item = masked_item(codes, ids, spans, tok, mask, i, 0)
        out.append(tok.input_ids(np.where(item.token_masked, tok.mask_id, ids)))
    return out


def windows_per_s(step, windows: list) -> float:
    """step(shard) over shards of SHARD windows -> windows/s."""
    t0 = time.perf_counter()
    for k in range(0, len(windows), SHARD):
        step(windows[k:k + SHARD])
    return len(windows) / (time.perf_counter() - t0)


def forward_per_s(model: torch.nn.Module, input_ids: list[np.ndarray], repeats: int = 3) -> float:
    """Windows/s of a batch-1 forward (what a CPU teacher sees), median over `repeats` windows."""
    times = []
    with torch.inference_mode():
        model(input_ids=torch.from_numpy(input_ids[0])[None])  # warm-up
        for ids in input_ids[:repeats]:
            t0 = time.perf_counter()
            model(input_ids=torch.from_numpy(ids)[None])
            times.append(time.perf_counter() - t0)
    return 1 / statistics.median(times)


def teachers(tok_kmer, tok_bpe) -> dict:
    from transformers import BertConfig, BertModel, EsmConfig, EsmModel

    ntv2 = EsmConfig(vocab_size=tok_kmer.vocab_size, hidden_size=512, num_hidden_layers=22, num_attention_heads=16,
                     intermediate_size=2048, position_embedding_type="rotary", max_position_embeddings=2050,
                     pad_token_id=tok_kmer.pad_id, emb_layer_norm_before=False, token_dropout=False)
    dnabert2 = BertConfig(vocab_size=tok_bpe.vocab_size, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                          intermediate_size=3072, max_position_embeddings=1024, pad_token_id=tok_bpe.pad_id)
    return {"kmer": EsmModel(ntv2, add_pooling_layer=False).eval(), "bpe": BertModel(dnabert2, add_pooling_layer=False).eval()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    n_windows, rounds = (300, 3) if args.quick else (2000, 5)

    sys.path.insert(0, str(REPO / "tests"))
    from dna_teachers import char_tokenizer

    char_dir = Path(tempfile.mkdtemp()) / "hyena"
    char_tokenizer(char_dir, "hyena")
    toks = {"kmer": NTv2Tokenizer.default(), "bpe": load_tokenizer(SHARED / "reference" / "dnabert2"),
            "char": load_tokenizer(char_dir)}
    text = CHR20.read_text().split("\n", 1)[1].replace("\n", "")
    starts = np.random.default_rng(0).integers(0, len(text) - WINDOW, n_windows)
    windows = [alphabet.encode(text[s:s + WINDOW]) for s in starts]

    texts = [alphabet.decode(w) for w in windows]
    hf_encode = toks["bpe"]._backend.encode_batch_fast  # the HF tokenizer alone: the floor of the bpe family
    cases = {  # name: (family, step, inputs)
        "kmer": ("kmer", lambda shard: prepare(toks["kmer"], shard), windows),
        "bpe": ("bpe", lambda shard: prepare(toks["bpe"], shard), windows),
        "bpe: HF encode alone": ("bpe", lambda shard: hf_encode(shard, add_special_tokens=False), texts),
        "char": ("char", lambda shard: prepare(toks["char"], shard), windows),
        "char, span_tokens=6": ("char", lambda shard: prepare(toks["char"], shard, 6), windows),
    }
    rates = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (_, step, inputs) in cases.items():
            rates[name].append(windows_per_s(step, inputs))
    forward = {}
    if not args.quick:
        for family, model in teachers(toks["kmer"], toks["bpe"]).items():
            forward[family] = forward_per_s(model, prepare(toks[family], windows[:4]))

    tokens = {f: np.mean([len(toks[f].tokenize(w)[0]) for w in windows[:200]]) for f in toks}
    print(f"{time.strftime('%Y-%m-%d')}, `.venv/bin/python benchmarks/bench_tokenizers.py{' --quick' if args.quick else ''}`, "
          f"{platform.node()}: {os.cpu_count()} CPU cores, one thread, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.1f} at the end; {n_windows} chr20 windows of {WINDOW} nt, "
          f"median of {rounds} interleaved rounds\n")
    print("| family | tokens / window | prepare windows/s | ratio to kmer (same rounds) | forward windows/s (shape) |")
    print("|---|---|---|---|---|")
    for name, (family, _, _) in cases.items():
        ratio = statistics.median(r / k for r, k in zip(rates[name], rates["kmer"]))
        fwd = {"kmer": "NTv2-100M", "bpe": "DNABERT-2 117M"}.get(family) if name == family else None
        cell = f"{forward[family]:.2f} ({fwd})" if fwd and family in forward else ""
        print(f"| {name} | {tokens[family]:.0f} | {statistics.median(rates[name]):.0f} | {ratio:.2f} | {cell} |")


if __name__ == "__main__":
    main()
