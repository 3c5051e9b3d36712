"""Synthetic genome and tasks: determinism, files that parse back, and the grammar actually planted."""
import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.linear_model import LogisticRegression

from had.data import alphabet
from had.data.fasta import FastaFile, read_fasta
from had.data.synthetic import (MIN_SCORE, PAIR_SPACING, TATA_TO_START, TASKS, make_grammar, make_task,
                                write_genome, write_tasks)

SMALL = dict(n_contigs=3, contig_length=80_000)


def scan(motif, codes: np.ndarray) -> list[tuple[int, str]]:
    """Every (start, strand) where the motif scores >= MIN_SCORE, by brute force over offsets."""
    lo = np.log(np.maximum(motif.pwm, 1e-300) / 0.25)
    best = lo.max(axis=1).sum()
    hits = []
    for strand, seq in (("+", codes), ("-", alphabet.reverse_complement(codes))):
        windows = sliding_window_view(seq, motif.width)
        scores = lo[np.arange(motif.width), windows].sum(axis=1) / best
        for at in np.flatnonzero(scores >= MIN_SCORE):
            hits.append((int(at) if strand == "+" else int(codes.size - at - motif.width), strand))
    return hits


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    path = tmp_path_factory.mktemp("genome") / "g.fa"
    return path, write_genome(path, seed=7, **SMALL)


def test_genome_is_deterministic(genome, tmp_path):
    path, _ = genome
    write_genome(tmp_path / "same.fa", seed=7, **SMALL)
    write_genome(tmp_path / "other.fa", seed=8, **SMALL)
    assert (tmp_path / "same.fa").read_bytes() == path.read_bytes()
    assert (tmp_path / "same.fa.fai").read_bytes() == Path(f"{path}.fai").read_bytes()
    assert (tmp_path / "other.fa").read_bytes() != path.read_bytes()


def test_genome_parses_back_with_a_correct_index(genome):
    path, _ = genome
    records = dict(read_fasta(path))
    indexed = FastaFile(path)
    assert indexed._index is not None
    assert indexed.contigs == {f"syn{i + 1}": SMALL["contig_length"] for i in range(SMALL["n_contigs"])}
    for name, codes in records.items():
        assert np.array_equal(indexed.fetch(name), codes)


def test_genome_has_realistic_structure(genome):
    path, elements = genome
    text = b"".join(line.strip() for line in path.read_bytes().splitlines() if not line.startswith(b">"))
    raw = np.frombuffer(text, dtype=np.uint8)
    soft = (raw >= ord("a")) & (raw != ord("n"))
    codes = alphabet.encode(text)
    assert 0.05 < soft.mean() < 0.4  # soft-masked repeats
    assert len({chr(c) for c in raw}) >= 9  # ACGTN in both cases (at least the gaps' N)

    records = dict(read_fasta(path))
    gaps = [e for e in elements if e.kind == "gap"]
    assert gaps
    for e in gaps:
        assert (records[e.contig][e.start : e.end] == alphabet.N).all()

    acgt = codes[codes < 4]
    gc = np.isin(acgt, [alphabet.C, alphabet.G])
    blocks = gc[: gc.size // 5000 * 5000].reshape(-1, 5000).mean(axis=1)
    assert 0.33 < gc.mean() < 0.5 and blocks.std() > 0.03  # GC varies by region
    cpg = np.mean((acgt[:-1] == alphabet.C) & (acgt[1:] == alphabet.G))
    expected = np.mean(acgt == alphabet.C) * np.mean(acgt == alphabet.G)
    assert cpg / expected < 0.5  # CpG depletion (observed / expected)


def test_planted_elements_are_where_the_annotation_says(genome):
    path, elements = genome
    records = dict(read_fasta(path))
    grammar = make_grammar(7)
    sites = [e for e in elements if e.kind in grammar.motifs]
    assert {e.kind for e in sites} == set(grammar.motifs) and {e.strand for e in sites} == {"+", "-"}
    for e in sites:
        codes = records[e.contig][e.start : e.end]
        if e.strand == "-":
            codes = alphabet.reverse_complement(codes)
        assert grammar.motifs[e.kind].score(codes) >= MIN_SCORE, e
        if e.kind == "donor":
            assert alphabet.decode(codes[3:5]) == "GT"
        if e.kind == "acceptor":
            assert alphabet.decode(codes[12:14]) == "AG"

    genes = [e for e in elements if e.kind == "gene"]
    assert len(genes) >= 5
    for gene in genes:
        inside = {e.kind: e for e in sites if e.contig == gene.contig and gene.start <= e.start < gene.end}
        tata, start = inside["tata"], inside["start"]
        assert tata.strand == start.strand == gene.strand
        if gene.strand == "+":
            assert start.start - tata.start == TATA_TO_START
        else:
            assert tata.end - start.end == TATA_TO_START


def read_fna(path: Path) -> tuple[list[str], list[str], list[int]]:
    lines = path.read_text().splitlines()
    headers, seqs = lines[0::2], lines[1::2]
    assert all(h.startswith(">") for h in headers)
    names, labels = zip(*(h[1:].rsplit("|", 1) for h in headers))
    return list(names), seqs, [int(y) for y in labels]


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_tasks_in_nt_and_gb_layouts_parse_back(tmp_path):
    sizes = dict(n_train=60, n_test=30, length=120)
    folders = write_tasks(tmp_path / "nt", "nt", seed=3, **sizes)
    write_tasks(tmp_path / "gb", "gb", seed=3, **sizes)
    assert set(folders) == set(TASKS)
    for name, (classes, _) in TASKS.items():
        for split, n in (("train", 60), ("test", 30)):
            expected = make_task(name, split, 3, n, 120)
            table = pq.read_table(tmp_path / "nt" / name / f"{split}.parquet").to_pydict()
            assert table["sequence"] == expected.sequences and table["label"] == expected.labels.tolist()
            names, seqs, labels = read_fna(tmp_path / "nt" / name / f"{split}.fna")
            assert (names, seqs, labels) == (table["name"], table["sequence"], table["label"])

            class_dirs = sorted(p.name for p in (tmp_path / "gb" / name / split).iterdir())
            assert class_dirs == list(classes)
            gb = sorted((int(f.stem), f.read_text(), class_dirs.index(d))
                        for d in class_dirs for f in (tmp_path / "gb" / name / split / d).glob("*.txt"))
            assert [(s, y) for _, s, y in gb] == list(zip(expected.sequences, expected.labels.tolist()))

            counts = np.bincount(expected.labels, minlength=len(classes))
            assert counts.max() - counts.min() <= 1  # balanced
            assert all(len(s) == 120 and set(s) <= set("ACGT") for s in expected.sequences)
    assert make_task("enhancers", "train", 3, 60, 120).sequences != make_task("enhancers", "test", 3, 60, 120).sequences


def test_tasks_are_deterministic_per_seed(tmp_path):
    for seed, out in ((1, "a"), (1, "b"), (2, "c")):
        write_tasks(tmp_path / out, "nt", seed, n_train=20, n_test=10, length=100, tasks=["promoter_tata"])
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b") != tree_digest(tmp_path / "c")


@pytest.mark.parametrize("name", list(TASKS))
def test_task_labels_follow_the_grammar(name):
    grammar = make_grammar(5)
    data = make_task(name, "train", 5, 120, 160)
    for seq, label, sites in zip(data.sequences, data.labels, data.sites):
        codes = alphabet.encode(seq)
        for start, end, strand, kind in sites:
            if kind in grammar.motifs:
                site = codes[start:end] if strand == "+" else alphabet.reverse_complement(codes[start:end])
                assert grammar.motifs[kind].score(site) >= MIN_SCORE
        motif_sites = {kind: (start, end, strand) for start, end, strand, kind in sites
                       if kind in grammar.motifs or kind.startswith("family")}
        assert RULES[name](codes, label, motif_sites, grammar)


def _promoter_rule(codes, label, s, g):
    paired = "tata" in s and "start" in s and s["start"][0] - s["tata"][0] == TATA_TO_START
    return paired == bool(label)


def _splice_rule(kind, offset, core):
    def rule(codes, label, s, g):
        centre = codes.size // 2
        window = codes[centre - offset : centre - offset + g.motifs[kind].width]
        return alphabet.decode(codes[centre : centre + 2]) == core and (
            g.motifs[kind].score(window) >= MIN_SCORE) == bool(label)
    return rule


def _enhancer_rule(codes, label, s, g):
    (a0, e0, s0), (a1, e1, s1) = s["tf0"], s["tf1"]
    forward = s0 == s1 == "+" and a1 - e0 == PAIR_SPACING
    reverse = s0 == s1 == "-" and a0 - e1 == PAIR_SPACING
    return (forward or reverse) == bool(label)


def _long_range_rule(codes, label, s, g):
    edge = 0.15 * codes.size
    (a2, _, s2), (_, e3, s3) = s["tf2"], s["tf3"]
    return a2 < edge and e3 > codes.size - edge and (s2 == s3) == bool(label)


def _regulatory_rule(codes, label, s, g):
    return {0: set(), 1: {"tf0", "tf1"}, 2: {"tata", "start"}}[int(label)] <= set(s) and (
        label != 0 or not s)


def _family_rule(codes, label, s, g):
    """The planted fragment matches its own family best (fewest mismatches over every offset and strand),
    within the divergence the task draws."""
    (start, end, _), = [v for k, v in s.items() if k.startswith("family")] or [(0, 0, "")]
    fragment = codes[start:end]

    def best_identity(family):
        size = fragment.size
        return max(np.mean(f == family[at : at + size]) for f in (fragment, alphabet.reverse_complement(fragment))
                   for at in range(family.size - size + 1))

    identity = [best_identity(family) for family in g.repeats]
    return f"family{label}" in s and int(np.argmax(identity)) == label and identity[label] > 0.65


RULES = {
    "promoter_tata": _promoter_rule,
    "splice_sites_donors": _splice_rule("donor", 3, "GT"),
    "splice_sites_acceptors": _splice_rule("acceptor", 12, "AG"),
    "enhancers": _enhancer_rule,
    "enhancers_long_range": _long_range_rule,
    "regulatory_types": _regulatory_rule,
    "repeat_family": _family_rule,
}


def kmer_counts(seqs: list[str], k: int = 4) -> np.ndarray:
    out = np.zeros((len(seqs), 4**k))
    for row, seq in enumerate(seqs):
        windows = sliding_window_view(alphabet.encode(seq).astype(np.int64), k)
        np.add.at(out[row], windows @ (4 ** np.arange(k - 1, -1, -1)), 1)
    return out


def test_long_range_task_needs_both_ends():
    """A PWM scan of both ends solves it; k-mer counts (no positions) stay near chance."""
    grammar = make_grammar(0)
    train, test = (make_task("enhancers_long_range", split, 0, n, 200) for split, n in (("train", 1000), ("test", 500)))

    def oracle(seq):
        codes = alphabet.encode(seq)
        s2 = [strand for at, strand in scan(grammar.motifs["tf2"], codes) if at < 30]
        s3 = [strand for at, strand in scan(grammar.motifs["tf3"], codes) if at > 160]
        return int(bool(s2) and bool(s3) and s2[0] == s3[-1])

    assert np.mean([oracle(s) for s in test.sequences] == test.labels) > 0.95
    model = LogisticRegression(max_iter=2000).fit(kmer_counts(train.sequences), train.labels)
    assert model.score(kmer_counts(test.sequences), test.labels) < 0.6


def test_local_task_is_solved_by_a_local_scan():
    grammar = make_grammar(0)
    test = make_task("promoter_tata", "test", 0, 200, 200)

    def oracle(seq):
        codes = alphabet.encode(seq)
        tatas = {at for at, strand in scan(grammar.motifs["tata"], codes) if strand == "+"}
        return int(any(at - TATA_TO_START in tatas for at, strand in scan(grammar.motifs["start"], codes)
                       if strand == "+"))

    assert np.mean([oracle(s) for s in test.sequences] == test.labels) > 0.95


def test_repeat_fraction_sets_the_soft_masked_share(tmp_path):
    """Repeats are laid down to the asked share; genes, enhancers and gaps laid over them take a little back."""
    for fraction in (0.2, 0.5):
        elements = write_genome(tmp_path / "g.fa", seed=2, n_contigs=1, contig_length=200_000,
                                repeat_fraction=fraction)
        text = b"".join(line.strip() for line in (tmp_path / "g.fa").read_bytes().splitlines()[1:])
        soft = np.frombuffer(text, dtype=np.uint8) >= ord("a")
        laid_over = np.zeros(soft.size, dtype=bool)
        for e in elements:
            if e.kind in ("gene", "enhancer", "gap"):
                laid_over[e.start : e.end] = True
        assert not (soft & laid_over).any()
        assert fraction * (1 - laid_over.mean()) - 0.03 < soft.mean() <= fraction
