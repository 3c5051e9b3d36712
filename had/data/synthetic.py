"""A synthetic genome with regulatory "grammar", and classification tasks drawn from it.

Everything is a function of one seed, so the demo and the reproduction experiments
can be regenerated anywhere:

    grammar = make_grammar(seed)              # motif PWMs + repeat families
    elements = write_genome("genome.fa", seed, n_contigs=4, contig_length=500_000)
    write_tasks("tasks_nt", "nt", seed)       # <task>/{train,test}.{parquet,fna}
    write_tasks("tasks_gb", "gb", seed)       # <task>/{train,test}/<class>/<id>.txt

The genome: isochore-like regions of varying GC content with CpG depletion;
interspersed repeat families and microsatellites (diverged copies on both strands,
soft-masked in lower case); N gaps; genes on both strands (a TATA box at a fixed
offset upstream of a GC-rich start motif inside a CpG island, exons separated by
introns with donor GT... and ...AG acceptor signals); enhancers (clusters of TF
motifs obeying spacing and orientation rules). Motifs are position weight matrices
(PWMs); a planted site is a PWM sample scoring at least MIN_SCORE of the maximum.

The tasks reuse the same grammar and background model (see TASKS): most are
solvable from one local arrangement of motifs; ``enhancers_long_range`` needs the
relative orientation of two motifs at opposite ends of the sequence (an XOR, so
no single motif or k-mer count decides it); ``repeat_family`` asks which repeat
family a diverged fragment comes from (the families share one composition).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from had.data import alphabet

A, C, G, T, N = alphabet.A, alphabet.C, alphabet.G, alphabet.T, alphabet.N
IUPAC = {"A": "A", "C": "C", "G": "G", "T": "T", "W": "AT", "S": "CG", "R": "AG", "Y": "CT",
         "K": "GT", "M": "AC", "N": "ACGT"}
MIN_SCORE = 0.6  # a site counts as a motif hit at >= this fraction of the PWM's best log-odds
TATA_TO_START = 31  # nt from the TATA box's first base to the start motif's first base
PAIR_SPACING = 12  # enhancer rule: tf1 starts this many nt after tf0 ends, same strand
N_TF = 4
MIN_TASK_LENGTH = 100  # room for an enhancer's motif pair and extra sites
REPEAT_LENGTHS = (300, 240, 180)  # consensus lengths of the interspersed repeat families (SINE-like)
REPEAT_DIVERGENCE = (0.02, 0.15)  # per-copy substitution rate, uniform in this range (older copies diverge more)
ELEMENT_GAP = 4_000  # mean nt between consecutive genes / enhancers / gaps (exponential)


@dataclass(frozen=True)
class Motif:
    """A motif family: consensus (IUPAC) and its PWM, probabilities float [w, 4] (A C G T)."""

    name: str
    consensus: str
    pwm: np.ndarray

    @property
    def width(self) -> int:
        return len(self.consensus)

    def log_odds(self) -> np.ndarray:
        """Log-odds against a uniform background, float [w, 4] (-inf where the PWM is 0)."""
        with np.errstate(divide="ignore"):
            return np.log(self.pwm / 0.25)

    def score(self, codes: np.ndarray) -> float:
        """Fraction of the best possible log-odds reached by codes uint8 [w] (N scores -inf)."""
        lo = self.log_odds()
        if (codes >= 4).any():
            return -np.inf
        return float(lo[np.arange(self.width), codes].sum() / lo.max(axis=1).sum())


@dataclass(frozen=True)
class Grammar:
    """Motif families (tata, start, donor, acceptor, tf0..tf3) and repeat consensus sequences."""

    motifs: dict[str, Motif]
    repeats: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Element:
    """A planted site or region: contig, 0-based half-open [start, end), strand '+'/'-', kind.

    kind is a motif name (tata, start, donor, acceptor, tf0..) or a region: gene, enhancer, gap.
    """

    contig: str
    start: int
    end: int
    strand: str
    kind: str


def _pwm(consensus: str, sharpness: float, exact: str = "") -> np.ndarray:
    """PWM float [w, 4] from an IUPAC consensus: `sharpness` of the mass on the allowed
    bases, the rest spread over the others; positions marked 'x' in `exact` are certain."""
    pwm = np.zeros((len(consensus), 4))
    for i, letter in enumerate(consensus):
        allowed = ["ACGT".index(b) for b in IUPAC[letter]]
        certain = i < len(exact) and exact[i] == "x"
        p_in = 1.0 if certain or len(allowed) == 4 else sharpness
        pwm[i] = (1 - p_in) / (4 - len(allowed)) if len(allowed) < 4 else 0
        pwm[i, allowed] = p_in / len(allowed)
    return pwm


def make_grammar(seed: int) -> Grammar:
    """The motif families and repeat families of a seed (the same for genome and tasks)."""
    rng = np.random.default_rng([seed, 0])
    motifs = {
        "tata": Motif("tata", "TATAWAWR", _pwm("TATAWAWR", 0.9)),
        "start": Motif("start", "GCCRCCATGG", _pwm("GCCRCCATGG", 0.85, exact="......xxx")),
        # exon | intron: CAG|GTRAGT, the GT certain
        "donor": Motif("donor", "MAGGTRAGT", _pwm("MAGGTRAGT", 0.8, exact="...xx")),
        # polypyrimidine tract, then intron | exon: ...CAG|G, the AG certain
        "acceptor": Motif("acceptor", "YYYYYYYYYYNCAGG", _pwm("YYYYYYYYYYNCAGG", 0.8, exact="............xx")),
    }
    for i in range(N_TF):
        while True:  # orientation must be readable: no palindromic consensus
            consensus = "".join(rng.choice(list("ACGT"), size=int(rng.integers(8, 11))))
            if consensus != alphabet.decode(alphabet.reverse_complement(alphabet.encode(consensus))):
                break
        motifs[f"tf{i}"] = Motif(f"tf{i}", consensus, _pwm(consensus, 0.85))
    # A few consensus elements of a few hundred nt at one GC content: which family a fragment comes
    # from is told by its sequence (what a model can learn from the genome), not by its composition.
    repeats = tuple(_background(rng, length, 0.45) for length in REPEAT_LENGTHS)
    return Grammar(motifs, repeats)


def sample_site(rng: np.random.Generator, motif: Motif) -> np.ndarray:
    """One PWM sample scoring >= MIN_SCORE, codes uint8 [w]."""
    cum = np.cumsum(motif.pwm, axis=1)
    while True:
        site = np.minimum((rng.random((motif.width, 1)) > cum).sum(axis=1), T).astype(np.uint8)
        if motif.score(site) >= MIN_SCORE:
            return site


def _background(rng: np.random.Generator, length: int, gc: float, cpg_depletion: float = 0.75) -> np.ndarray:
    """i.i.d. bases at the given GC fraction, then CpG -> TpG / CpA with prob. cpg_depletion
    (the deamination signature that makes CpG rare in vertebrate DNA), codes uint8 [length]."""
    probs = np.array([1 - gc, gc, gc, 1 - gc]) / 2
    seq = np.searchsorted(np.cumsum(probs), rng.random(length), side="right").astype(np.uint8)
    seq = np.minimum(seq, T)  # the cumsum may end a hair below 1
    cpg = np.flatnonzero((seq[:-1] == C) & (seq[1:] == G) & (rng.random(max(length - 1, 0)) < cpg_depletion))
    to_tpg = rng.random(cpg.size) < 0.5
    seq[cpg[to_tpg]] = T
    seq[cpg[~to_tpg] + 1] = A
    return seq


def _mutate(rng: np.random.Generator, seq: np.ndarray, divergence: float) -> np.ndarray:
    out = seq.copy()
    hit = rng.random(seq.size) < divergence
    out[hit] = (out[hit] + rng.integers(1, 4, int(hit.sum()))) % 4
    return out


class _Builder:
    """A sequence under construction, with the sites planted in it (local coordinates)."""

    def __init__(self, seq: np.ndarray):
        self.seq = seq
        self.sites: list[tuple[int, int, str, str]] = []  # start, end, strand, kind

    def plant(self, rng: np.random.Generator, motif: Motif, at: int, strand: str = "+") -> int:
        site = sample_site(rng, motif)
        self.seq[at : at + motif.width] = site if strand == "+" else alphabet.reverse_complement(site)
        self.sites.append((at, at + motif.width, strand, motif.name))
        return at + motif.width


# --- genome ------------------------------------------------------------------------------------


def _gene(rng: np.random.Generator, g: Grammar) -> _Builder:
    """Promoter (CpG island, TATA, start motif) then 2-4 exons separated by introns, '+' strand."""
    m = g.motifs
    island = _background(rng, 300, 0.65, cpg_depletion=0.1)
    exons = [_background(rng, int(rng.integers(60, 200)), 0.52) for _ in range(int(rng.integers(2, 5)))]
    introns = [_background(rng, int(rng.integers(200, 1500)), 0.4) for _ in exons[1:]]
    parts = [island] + [p for pair in zip(exons, introns + [None]) for p in pair if p is not None]
    b = _Builder(np.concatenate(parts))
    tss = island.size - 60
    b.plant(rng, m["tata"], tss - TATA_TO_START)
    b.plant(rng, m["start"], tss)
    pos = island.size
    for exon, intron in zip(exons, introns):
        pos += exon.size
        b.plant(rng, m["donor"], pos - 3)  # CAG|GT...: 3 exonic bases before the GT
        pos += intron.size
        b.plant(rng, m["acceptor"], pos - 14)  # ...CAG|G: the exon starts with the last base
    b.sites.append((0, b.seq.size, "+", "gene"))
    return b


def _enhancer(rng: np.random.Generator, g: Grammar, length: int = 200, gc: float = 0.45) -> _Builder:
    """The tf0 -> tf1 pair (spacing and orientation rule, on either strand) plus 1-3 other TF sites."""
    m = g.motifs
    b = _Builder(_background(rng, length, gc))
    pair = m["tf0"].width + PAIR_SPACING + m["tf1"].width
    at = int(rng.integers(0, length - pair - 60))
    if rng.random() < 0.5:
        b.plant(rng, m["tf1"], b.plant(rng, m["tf0"], at) + PAIR_SPACING)
    else:  # the pair read on the other strand
        b.plant(rng, m["tf0"], b.plant(rng, m["tf1"], at, "-") + PAIR_SPACING, "-")
    at += pair + 4
    for _ in range(int(rng.integers(1, 4))):
        extra = m[f"tf{rng.integers(2, N_TF)}"]
        if at + extra.width > length:
            break
        at = b.plant(rng, extra, at, "+-"[rng.integers(2)]) + int(rng.integers(2, 10))
    b.sites.append((0, length, "+", "enhancer"))
    return b


def _contig(rng: np.random.Generator, g: Grammar, name: str, length: int, repeat_fraction: float
            ) -> tuple[np.ndarray, np.ndarray, list[Element]]:
    """One contig: codes uint8 [length], soft mask bool [length], planted elements.

    Repeat copies are dropped at random places until they cover `repeat_fraction` of the contig
    (before genes, enhancers and gaps are laid over them).
    """
    seq = np.empty(length, dtype=np.uint8)
    pos = 0
    while pos < length:  # isochores: regions of 5-60 kb with their own GC content
        region = min(length - pos, int(rng.integers(5_000, 60_000)))
        seq[pos : pos + region] = _background(rng, region, float(np.clip(rng.normal(0.41, 0.07), 0.3, 0.6)))
        pos += region

    soft = np.zeros(length, dtype=bool)
    covered = 0
    while covered < repeat_fraction * length:
        if rng.random() < 0.2:  # microsatellite: a 1-6 nt unit repeated
            unit = rng.integers(0, 4, int(rng.integers(1, 7))).astype(np.uint8)
            copy = _mutate(rng, np.tile(unit, int(rng.integers(8, 40))), 0.03)
        else:
            family = g.repeats[rng.integers(len(g.repeats))]
            keep = int(rng.integers(family.size // 3, family.size + 1))  # 5'-truncated copies
            copy = _mutate(rng, family[-keep:], float(rng.uniform(*REPEAT_DIVERGENCE)))
            if rng.random() < 0.5:
                copy = alphabet.reverse_complement(copy)
        at = int(rng.integers(0, max(length - copy.size, 1)))
        copy = copy[: length - at]
        covered += copy.size - int(soft[at : at + copy.size].sum())
        seq[at : at + copy.size] = copy
        soft[at : at + copy.size] = True

    elements = []
    pos = int(rng.integers(0, min(5_000, length // 10) + 1))
    seq[:pos] = N  # telomere-like gap
    soft[:pos] = False
    if pos:
        elements.append(Element(name, 0, pos, "+", "gap"))
    while True:
        pos += int(rng.exponential(ELEMENT_GAP))
        kind = rng.choice(["gene", "enhancer", "gap"], p=[0.4, 0.5, 0.1])
        if kind == "gap":
            gap = int(rng.integers(100, max(101, min(5_000, length // 50))))
            if pos + gap > length:
                break
            seq[pos : pos + gap] = N
            soft[pos : pos + gap] = False
            elements.append(Element(name, pos, pos + gap, "+", "gap"))
            pos += gap
            continue
        b = _gene(rng, g) if kind == "gene" else _enhancer(rng, g)
        if pos + b.seq.size > length:
            break
        strand = "+-"[rng.integers(2)]
        size = b.seq.size
        seq[pos : pos + size] = b.seq if strand == "+" else alphabet.reverse_complement(b.seq)
        soft[pos : pos + size] = False
        for start, end, site_strand, site_kind in b.sites:
            if strand == "-":
                start, end, site_strand = size - end, size - start, "-" if site_strand == "+" else "+"
            elements.append(Element(name, pos + start, pos + end, site_strand, site_kind))
        pos += size
    return seq, soft, elements


def contig_name(i: int) -> str:
    """Name of the i-th (0-based) contig `write_genome` writes."""
    return f"syn{i + 1}"


def write_genome(path: str | Path, seed: int, n_contigs: int = 4, contig_length: int = 500_000,
                 line_width: int = 60, repeat_fraction: float = 0.2) -> list[Element]:
    """Write a synthetic genome FASTA (contigs ``syn1``..) and its ``.fai``; return the planted elements.

    About 0.3 s per Mb on one core. Repeats are soft-masked (lower case), gaps are N.
    `repeat_fraction`: the share of each contig repeat copies are dropped on (mammals: about half).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grammar = make_grammar(seed)
    upper = np.frombuffer(b"ACGTN", dtype=np.uint8)
    lower = np.frombuffer(b"acgtn", dtype=np.uint8)
    out, index, elements = bytearray(), [], []
    for i in range(n_contigs):
        name = contig_name(i)
        rng = np.random.default_rng([seed, 1, i])
        seq, soft, planted = _contig(rng, grammar, name, contig_length, repeat_fraction)
        elements += planted
        text = np.where(soft, lower[seq], upper[seq])
        out += f">{name}\n".encode()
        index.append(f"{name}\t{contig_length}\t{len(out)}\t{line_width}\t{line_width + 1}\n")
        out += _wrap(text, line_width)
    path.write_bytes(bytes(out))
    Path(f"{path}.fai").write_text("".join(index))
    return elements


def _wrap(text: np.ndarray, width: int) -> bytes:
    """ASCII bytes uint8 [L] -> lines of `width` characters, each ending in a newline."""
    full = text.size // width * width
    lines = np.concatenate([text[:full].reshape(-1, width), np.full((full // width, 1), ord("\n"), np.uint8)], axis=1)
    tail = text[full:].tobytes() + b"\n" if text.size > full else b""
    return lines.tobytes() + tail


# --- tasks -------------------------------------------------------------------------------------


def _promoter_tata(rng, g, label, length):
    """1: TATA box then the start motif TATA_TO_START nt downstream; 0: no motif (half) or the
    two motifs at a wrong spacing (half). GC-rich background either way."""
    b = _Builder(_background(rng, length, float(rng.uniform(0.5, 0.65)), cpg_depletion=0.2))
    tata, start = g.motifs["tata"], g.motifs["start"]
    if label == 0 and rng.random() < 0.5:
        return b
    spacing = TATA_TO_START if label else int(rng.choice(np.r_[10:22, 42:70]))
    at = int(rng.integers(5, length - spacing - start.width - 5))
    b.plant(rng, tata, at)
    b.plant(rng, start, at + spacing)
    return b


def _splice(kind: str, offset: int, core: tuple[int, int]):
    """Splice task: 1 = the `kind` signal with its core dinucleotide at the centre; 0 = the same
    dinucleotide at the centre in a context that is not a motif hit (a decoy)."""
    def build(rng, g, label, length):
        motif = g.motifs[kind]
        centre = length // 2
        b = _Builder(_background(rng, length, 0.45))
        if label:
            b.plant(rng, motif, centre - offset)
            return b
        while True:
            b.seq[centre - offset : centre - offset + motif.width] = _background(rng, motif.width, 0.45)
            b.seq[centre : centre + 2] = core
            if motif.score(b.seq[centre - offset : centre - offset + motif.width]) < MIN_SCORE:
                return b
    return build


def _enhancers(rng, g, label, length):
    """1: tf0 then tf1 at PAIR_SPACING on one strand (either); 0: both present but at a wrong
    spacing or in a wrong relative orientation."""
    b = _Builder(_background(rng, length, 0.45))
    tf0, tf1 = g.motifs["tf0"], g.motifs["tf1"]
    spacing = PAIR_SPACING if label or rng.random() < 0.5 else int(rng.integers(25, 60))
    flip = (not label) and spacing == PAIR_SPACING  # wrong orientation instead of wrong spacing
    at = int(rng.integers(0, length - tf0.width - spacing - tf1.width))
    if rng.random() < 0.5:
        b.plant(rng, tf1, b.plant(rng, tf0, at) + spacing, "-" if flip else "+")
    else:
        b.plant(rng, tf0, b.plant(rng, tf1, at, "+" if flip else "-") + spacing, "-")
    return b


def _enhancers_long_range(rng, g, label, length):
    """tf2 within the first 15% and tf3 within the last 15%, each on a random strand;
    1 when both are on the same strand. Needs both ends at once (XOR of orientations)."""
    b = _Builder(_background(rng, length, 0.45))
    tf2, tf3 = g.motifs["tf2"], g.motifs["tf3"]
    edge = max(int(0.15 * length), tf2.width, tf3.width)
    strand = "+-"[rng.integers(2)]
    b.plant(rng, tf2, int(rng.integers(0, edge - tf2.width + 1)), strand)
    other = strand if label else ("-" if strand == "+" else "+")
    b.plant(rng, tf3, length - int(rng.integers(tf3.width, edge + 1)), other)
    return b


def _regulatory_types(rng, g, label, length):
    """0 background, 1 enhancer (TF cluster), 2 promoter (TATA + start at the rule spacing)."""
    if label == 1:
        return _enhancer(rng, g, length)
    if label == 2:
        return _promoter_tata(rng, g, 1, length)
    return _Builder(_background(rng, length, float(rng.uniform(0.38, 0.6))))


def _repeat_family(rng, g, label, length):
    """A diverged fragment of a copy of repeat family `label` (either strand, 10-25% substitutions)
    in a background of the same GC: which family it is, told by sequence, not composition (as a
    repeat annotator does). The fragment is `length` nt, or the whole copy in flanks if shorter."""
    family = g.repeats[label]
    size = min(length, family.size)
    at = int(rng.integers(0, family.size - size + 1))
    piece = _mutate(rng, family[at : at + size], float(rng.uniform(0.1, 0.25)))
    b = _Builder(_background(rng, length, 0.45))
    start = int(rng.integers(0, length - size + 1))
    strand = "+-"[rng.integers(2)]
    b.seq[start : start + size] = piece if strand == "+" else alphabet.reverse_complement(piece)
    b.sites.append((start, start + size, strand, f"family{label}"))
    return b


Build = Callable[[np.random.Generator, Grammar, int, int], _Builder]
# name -> (class names, sorted so that GB's sorted class folders give the same label ids; builder)
TASKS: dict[str, tuple[tuple[str, ...], Build]] = {
    "promoter_tata": (("negative", "positive"), _promoter_tata),
    "splice_sites_donors": (("negative", "positive"), _splice("donor", 3, (G, T))),
    "splice_sites_acceptors": (("negative", "positive"), _splice("acceptor", 12, (A, G))),
    "enhancers": (("negative", "positive"), _enhancers),
    "enhancers_long_range": (("negative", "positive"), _enhancers_long_range),
    "regulatory_types": (("background", "enhancer", "promoter"), _regulatory_types),
    "repeat_family": (tuple(f"family{i}" for i in range(len(REPEAT_LENGTHS))), _repeat_family),
}
SPLITS = ("train", "test")


@dataclass
class TaskSplit:
    """Generated examples: sequences (upper-case str), labels int64 [n], planted sites per example."""

    sequences: list[str]
    labels: np.ndarray
    sites: list[list[tuple[int, int, str, str]]]


def make_task(name: str, split: str, seed: int, n: int, length: int = 200) -> TaskSplit:
    """n examples (equal counts per class, shuffled) of one task split; deterministic."""
    if name not in TASKS:
        raise ValueError(f"unknown synthetic task '{name}' (tasks: {', '.join(TASKS)})")
    if length < MIN_TASK_LENGTH:
        raise ValueError(f"synthetic task sequences need length >= {MIN_TASK_LENGTH}, got {length}")
    classes, build = TASKS[name]
    grammar = make_grammar(seed)
    rng = np.random.default_rng([seed, 2, list(TASKS).index(name), SPLITS.index(split)])
    labels = rng.permutation(np.arange(n) % len(classes)).astype(np.int64)
    examples = [build(rng, grammar, int(label), length) for label in labels]
    return TaskSplit([alphabet.decode(b.seq) for b in examples], labels, [b.sites for b in examples])


def write_tasks(root: str | Path, layout: str, seed: int, n_train: int = 400, n_test: int = 200,
                length: int = 200, tasks: list[str] | None = None) -> dict[str, Path]:
    """Write synthetic tasks under root in a real benchmark layout; return {task: folder}.

    layout "nt": ``<task>/{train,test}.parquet`` (sequence, label, name) and ``.fna``
    (``>name|label``); layout "gb": ``<task>/{train,test}/<class>/<id>.txt``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if layout not in ("nt", "gb"):
        raise ValueError(f"layout must be 'nt' or 'gb', got '{layout}'")
    out = {}
    for name in tasks or list(TASKS):
        folder = Path(root) / name
        for split, n in zip(SPLITS, (n_train, n_test)):
            data = make_task(name, split, seed, n, length)
            names = [f"{name}_{split}_{i}" for i in range(n)]
            if layout == "nt":
                folder.mkdir(parents=True, exist_ok=True)
                table = pa.table({"sequence": data.sequences, "label": data.labels, "name": names})
                pq.write_table(table, folder / f"{split}.parquet")
                (folder / f"{split}.fna").write_text(
                    "".join(f">{n_}|{y}\n{s}\n" for n_, y, s in zip(names, data.labels, data.sequences)))
            else:
                classes = TASKS[name][0]
                for i, (seq, label) in enumerate(zip(data.sequences, data.labels)):
                    target = folder / split / classes[label]
                    target.mkdir(parents=True, exist_ok=True)
                    (target / f"{i}.txt").write_text(seq)
        out[name] = folder
    return out
