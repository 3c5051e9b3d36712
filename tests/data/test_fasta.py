"""FASTA / BED / windows, checked against plain-Python re-reads of the same files."""
import gzip
import hashlib
import random
from pathlib import Path

import numpy as np
import pytest

from had.config import GenomeConfig
from had.data import alphabet
from had.data.fasta import FastaFile, fasta_fingerprint, iter_windows, read_bed, read_fasta
from had.errors import HadError


def random_genome(seed: int, n_contigs: int = 4) -> dict[str, str]:
    rng = random.Random(seed)
    genome = {}
    for i in range(n_contigs):
        seq = [rng.choice("ACGTacgtRYN") for _ in range(rng.randrange(1, 3000))]
        for _ in range(3):  # N runs, some long enough to fill windows
            at, run = rng.randrange(len(seq)), rng.randrange(1, 400)
            seq[at : at + run] = "N" * len(seq[at : at + run])
        genome[f"ctg{i}"] = "".join(seq)
    return genome


def write_fasta(path: Path, genome: dict[str, str], width: int, gz: bool = False, fai: bool = False) -> Path:
    """Write FASTA (optionally gzipped) and, from scratch, its samtools-style .fai."""
    out, index = bytearray(), []
    for name, seq in genome.items():
        out += f">{name} some description\n".encode()
        index.append(f"{name}\t{len(seq)}\t{len(out)}\t{width}\t{width + 1}")
        for i in range(0, len(seq), width):
            out += seq[i : i + width].encode() + b"\n"
    path.write_bytes(gzip.compress(bytes(out)) if gz else bytes(out))
    if fai:
        Path(f"{path}.fai").write_text("\n".join(index) + "\n")
    return path


def codes(text: str) -> np.ndarray:
    return np.array([("ACGT".index(c.upper()) if c.upper() in "ACGT" else 4) for c in text], dtype=np.uint8)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_read_fasta_round_trips(tmp_path, gz):
    genome = random_genome(0)
    path = write_fasta(tmp_path / "g.fa", genome, width=61, gz=gz)
    records = list(read_fasta(path))
    assert [name for name, _ in records] == list(genome)
    for (_, got), seq in zip(records, genome.values()):
        assert np.array_equal(got, codes(seq))


def test_fai_fetch_equals_in_memory_fetch(tmp_path):
    genome = random_genome(1)
    indexed = FastaFile(write_fasta(tmp_path / "a.fa", genome, width=60, fai=True))
    in_memory = FastaFile(write_fasta(tmp_path / "b.fa.gz", genome, width=60, gz=True))
    assert indexed._index is not None and in_memory._index is None
    assert indexed.contigs == in_memory.contigs == {k: len(v) for k, v in genome.items()}
    rng = random.Random(2)
    for _ in range(300):
        name = rng.choice(list(genome))
        start = rng.randrange(len(genome[name]) + 1)
        end = rng.randrange(start, len(genome[name]) + 1)
        expected = codes(genome[name][start:end])
        assert np.array_equal(indexed.fetch(name, start, end), expected)
        assert np.array_equal(in_memory.fetch(name, start, end), expected)


def test_bgzip_with_samtools_indexes_is_read_on_demand(tmp_path):
    """bgzip + `samtools faidx` (through pysam, htslib's own code) make a .fa.gz randomly accessible."""
    pysam = pytest.importorskip("pysam")
    genome = random_genome(3, n_contigs=6) | {"big": "ACGTTGCA" * 40_000}  # 320 kb: several BGZF blocks
    plain = write_fasta(tmp_path / "g.fa", genome, width=60)
    bgzipped = tmp_path / "g.fa.gz"
    pysam.tabix_compress(str(plain), str(bgzipped))
    pysam.faidx(str(bgzipped))  # writes g.fa.gz.fai and g.fa.gz.gzi
    fasta = FastaFile(bgzipped)
    assert fasta._records is None and len(fasta._blocks[0]) > 4  # indexed, never loaded whole
    assert fasta.contigs == {k: len(v) for k, v in genome.items()}
    rng = random.Random(4)
    for _ in range(300):
        name = rng.choice(list(genome))
        start = rng.randrange(len(genome[name]) + 1)
        end = rng.randrange(start, min(len(genome[name]), start + 3000) + 1)
        assert np.array_equal(fasta.fetch(name, start, end), codes(genome[name][start:end]))

    Path(f"{bgzipped}.gzi").write_bytes(b"\x05" + b"\x00" * 10)
    with pytest.raises(HadError, match="not a bgzip .gzi"):
        FastaFile(bgzipped)


def test_real_fai_on_chr20(chr20):
    fasta = FastaFile(chr20)
    assert fasta._index is not None and fasta.contigs == {"z": 1_000_000}
    text = chr20.read_text().split("\n", 1)[1].replace("\n", "")
    for start, end in [(0, 80), (79, 1103), (999_000, 1_000_000), (123_457, 124_481)]:
        assert alphabet.decode(fasta.fetch("z", start, end)) == text[start:end]


def test_fingerprint_is_sha256_of_the_bytes(tmp_path):
    path = write_fasta(tmp_path / "g.fa", random_genome(3), width=70)
    assert fasta_fingerprint(path) == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "no FASTA records"),
        (b"ACGT\n>a\nACGT\n", r":1: sequence before the first '>' header"),
        (b">a\nACGT\n>b\n>c\nAC\n", r":3: record 'b' has no sequence"),
        (b">a\nACGT\nAC1T\n", r":3: invalid character '1'"),
        (b">a\nACGT\n>a\nAC\n", r":3: duplicate record name 'a'"),
        (b">\nACGT\n", r":1: header without a name"),
        (b"\x00\x01binary", "sequence before"),
    ],
    ids=["empty", "seq-before-header", "empty-record", "digit", "duplicate", "no-name", "binary"],
)
def test_bad_fasta_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.fa"
    path.write_bytes(content)
    with pytest.raises(HadError, match=message) as err:
        FastaFile(path)
    assert str(path) in str(err.value)


def test_truncated_or_corrupt_gzip_names_the_file(tmp_path):
    data = gzip.compress(b"".join(f">c{i}\n".encode() + bytes(random.Random(i).choices(b"ACGT", k=5000)) + b"\n"
                                  for i in range(20)))
    truncated, corrupt = tmp_path / "trunc.fa.gz", tmp_path / "corrupt.fa.gz"
    truncated.write_bytes(data[: len(data) // 2])
    corrupt.write_bytes(data[:200] + bytes(100) + data[300:])
    with pytest.raises(HadError, match=f"{truncated}: truncated gzip file"):
        FastaFile(truncated)
    with pytest.raises(HadError, match=f"{corrupt}: corrupt gzip file"):
        FastaFile(corrupt)
    with pytest.raises(HadError, match=f"{tmp_path} is a directory"):
        FastaFile(tmp_path)


def test_missing_fasta_and_bad_index(tmp_path):
    with pytest.raises(HadError, match="not found"):
        FastaFile(tmp_path / "nope.fa")
    path = write_fasta(tmp_path / "g.fa", {"a": "ACGT" * 50}, width=60, fai=True)
    Path(f"{path}.fai").write_text("a\t200\t3\n")
    with pytest.raises(HadError, match=r"g.fa.fai:1: expected NAME"):
        FastaFile(path)
    Path(f"{path}.fai").write_text("a\t5000\t3\t60\t61\n")
    with pytest.raises(HadError, match="stale"):
        FastaFile(path)
    Path(f"{path}.fai").write_text("a\t200\t2\t60\t61\n")  # off by one: lands on the header
    with pytest.raises(HadError, match="does not match its .fai"):
        FastaFile(path).fetch("a", 0, 100)


def test_read_bed_and_its_errors(tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("# comment\ntrack name=x\nctg0\t0\t100\ttrain\n\nctg1\t5\t50\ttest\nctg0 200 300\n")
    rows = read_bed(bed)
    assert rows.contig.tolist() == ["ctg0", "ctg1", "ctg0"]
    assert rows.start.tolist() == [0, 5, 200] and rows.end.tolist() == [100, 50, 300]
    assert rows.split.tolist() == ["train", "test", ""] and rows.line.tolist() == [3, 5, 6]
    for text, message in [("ctg0\t10\n", ":1: expected CHROM"), ("a\t1\t2\nb\tx\t5\n", ":2: expected CHROM"),
                          ("a\t9\t5\n", ":1: need 0 <= start < end"), ("# only\n", "no intervals")]:
        bed.write_text(text)
        with pytest.raises(HadError, match=message):
            read_bed(bed)


def reference_windows(genome, intervals, window, stride, max_n_fraction):
    """Plain loops: (window_id, contig, start) kept, and the number skipped for N."""
    kept, skipped, window_id = [], 0, 0
    for name, lo, hi in intervals:
        for start in range(lo, hi - window + 1, stride):
            if sum(c.upper() not in "ACGT" for c in genome[name][start : start + window]) > max_n_fraction * window:
                skipped += 1
            else:
                kept.append((window_id, name, start))
            window_id += 1
    return kept, skipped


def table_rows(table):
    return [(int(w), table.contigs[c], int(s)) for w, c, s in zip(table.window_id, table.contig, table.start)]


@pytest.mark.parametrize("window, stride, max_n", [(100, None, 0.5), (64, 17, 0.0), (500, 250, 1.0), (7, 3, 0.3)])
def test_windows_equal_plain_loops(tmp_path, window, stride, max_n):
    genome = random_genome(4)
    path = write_fasta(tmp_path / "g.fa", genome, width=60, fai=True)
    cfg = GenomeConfig(fasta=str(path), window=window, stride=stride, max_n_fraction=max_n,
                       exclude_contigs=["ctg2"])
    table = iter_windows(cfg)
    intervals = [(name, 0, len(seq)) for name, seq in genome.items() if name != "ctg2"]
    kept, skipped = reference_windows(genome, intervals, window, stride or window, max_n)
    assert table_rows(table) == kept
    assert (table.n_skipped_n, table.n_candidates, len(table)) == (skipped, len(kept) + skipped, len(kept))
    assert np.array_equal(table.end - table.start, np.full(len(table), window))
    assert table.window_id.dtype == np.int64 and table.start.dtype == np.int64 and table.contig.dtype == np.int32


def test_windows_from_bed_split_in_file_order(tmp_path):
    genome = random_genome(5)
    path = write_fasta(tmp_path / "g.fa", genome, width=60)
    bed = tmp_path / "r.bed"
    rows = [("ctg3", 0, 900, "train"), ("ctg0", 10, 700, "valid"), ("ctg0", 5, 800, "train"), ("ctg1", 3, 20, "train")]
    rows = [(c, lo, min(hi, len(genome[c])), s) for c, lo, hi, s in rows]
    bed.write_text("".join(f"{c}\t{lo}\t{hi}\t{s}\n" for c, lo, hi, s in rows))
    cfg = GenomeConfig(fasta=str(path), bed=str(bed), split="train", window=50, stride=40, contigs=["ctg0", "ctg3"])
    table = iter_windows(cfg)
    intervals = [(c, lo, hi) for c, lo, hi, s in rows if s == "train" and c in ("ctg0", "ctg3")]
    kept, skipped = reference_windows(genome, intervals, 50, 40, 0.5)
    assert table_rows(table) == kept and table.n_skipped_n == skipped
    assert table.locus(0) == ("ctg3", 0, 50)


@pytest.mark.parametrize("window, stride", [(700, None), (300, 120), (250, 400)])
def test_short_intervals_and_uncovered_nt_equal_a_coverage_mask(tmp_path, window, stride):
    genome = random_genome(6, n_contigs=8)
    path = write_fasta(tmp_path / "g.fa", genome, width=60)
    table = iter_windows(GenomeConfig(fasta=str(path), window=window, stride=stride, max_n_fraction=1.0))
    short = [len(seq) for seq in genome.values() if len(seq) < window]
    uncovered = 0
    for seq in genome.values():
        if len(seq) >= window:
            covered = np.zeros(len(seq), bool)
            for start in range(0, len(seq) - window + 1, stride or window):
                covered[start:start + window] = True
            uncovered += int((~covered).sum())
    assert (table.n_intervals, table.n_short, table.short_nt) == (len(genome), len(short), sum(short))
    assert table.uncovered_nt == uncovered
    assert f"{len(short)} of {len(genome)} contigs of {path}" in table.coverage()


def test_window_config_errors(tmp_path):
    path = write_fasta(tmp_path / "g.fa", {"a": "ACGT" * 100}, width=60)
    bed = tmp_path / "r.bed"
    cases = [
        (dict(fasta=""), "genome.fasta is not set"),
        (dict(contigs=["chrX"]), r"genome.contigs: \['chrX'\]"),
        (dict(exclude_contigs=["b"]), "genome.exclude_contigs"),
        (dict(split="train"), "needs a BED"),
        (dict(bed=str(bed), split="test"), "genome.split 'test'"),
    ]
    bed.write_text("a\t0\t100\ttrain\n")
    for overrides, message in cases:
        with pytest.raises(HadError, match=message):
            iter_windows(GenomeConfig(**{"fasta": str(path), "window": 10, **overrides}))
    bed.write_text("a\t0\t100\n")
    with pytest.raises(HadError, match=r"genome.split 'train': .*r.bed has no 4th \(split\) column"):
        iter_windows(GenomeConfig(fasta=str(path), bed=str(bed), split="train", window=10))
    bed.write_text("a\t0\t100\tname1\n")
    with pytest.raises(HadError, match=r"no row of .*r.bed has it in its 4th column \(values there: 'name1'\)$"):
        iter_windows(GenomeConfig(fasta=str(path), bed=str(bed), split="train", window=10))
    for text, message in [("b\t0\t10\n", r"r.bed:1: contig 'b'"), ("a\t0\t10\na\t0\t401\n", r"r.bed:2: end 401")]:
        bed.write_text(text)
        with pytest.raises(HadError, match=message):
            iter_windows(GenomeConfig(fasta=str(path), bed=str(bed), window=10))
