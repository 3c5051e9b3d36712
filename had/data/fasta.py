"""Genome input: FASTA / FASTA.gz records, .fai random access, BED intervals, windows.

    fasta = FastaFile("hg38.fa")          # uses hg38.fa.fai when present
    fasta = FastaFile("hg38.fa.gz")       # bgzip + `samtools faidx`: uses its .fai and .gzi
    fasta.contigs                         # {"chr1": 248956422, ...}
    fasta.fetch("chr1", 10_000, 11_024)   # alphabet codes, uint8 [1024]
    table = iter_windows(WindowSpec(fasta="hg38.fa", window=1024))  # WindowTable: columns + skip counts

Every problem with an input file is a HadError naming the file and line.
"""
from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from had.data import alphabet
from had.data.fingerprint import fingerprint
from had.errors import HadError

# Bytes allowed in sequence lines: letters only (case and IUPAC codes are the alphabet's
# business); digits, punctuation or binary bytes mean a garbled file.
_IS_LETTER = np.zeros(256, dtype=bool)
_IS_LETTER[np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)] = True
_BLOCK = 1 << 24  # nt read at once while counting N, to bound memory on 250 Mb contigs


@dataclass
class WindowSpec:
    """Which windows to cut from which genome (the run config's `genome:` section extends it)."""

    fasta: str = ""  # FASTA or FASTA.gz (a .fai beside a plain FASTA enables random access)
    bed: str | None = None  # optional BED of intervals to cut windows from
    split: str | None = None  # keep only BED rows whose split column equals this
    window: int = 1024  # window length in nucleotides
    stride: int | None = None  # step between window starts; None = window (no overlap)
    contigs: list[str] = field(default_factory=list)  # include only these (empty = all)
    exclude_contigs: list[str] = field(default_factory=list)
    max_n_fraction: float = 0.5  # windows with a larger fraction of N are skipped


def _is_gzip(path: Path) -> bool:
    if path.is_dir():
        raise HadError(f"FASTA {path} is a directory, not a file")
    if not path.is_file():
        raise HadError(f"FASTA file not found: {path}")
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _open(path: Path):
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def _check_letters(path: Path, first_line: int, lines: list[bytes]) -> None:
    """Raise naming the first line of a record that holds a non-letter byte."""
    for offset, line in enumerate(lines):
        bad = ~_IS_LETTER[np.frombuffer(line, dtype=np.uint8)]
        if bad.any():
            col = int(np.argmax(bad))
            raise HadError(
                f"{path}:{first_line + offset}: invalid character {chr(line[col])!r} in sequence (column {col + 1})"
            )


def read_fasta(path: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """Stream (name, codes uint8 [length]) records from a FASTA or gzipped FASTA file.

    The name is the header up to the first whitespace. Lower case and IUPAC codes
    are normalised by the alphabet; digits, punctuation, a sequence before any
    header, an empty record, a duplicate name or an empty file are errors.
    """
    path = Path(path)
    names: set[str] = set()
    name, header_line, lines = None, 0, []

    def finish() -> tuple[str, np.ndarray]:
        if not lines:
            raise HadError(f"{path}:{header_line}: record '{name}' has no sequence")
        seq = b"".join(lines)
        if not _IS_LETTER[np.frombuffer(seq, dtype=np.uint8)].all():
            _check_letters(path, header_line + 1, lines)
        return name, alphabet.encode(seq)

    try:
        with _open(path) as f:
            for number, raw in enumerate(f, start=1):
                line = raw.strip()
                if line.startswith(b">"):
                    if name is not None:
                        yield finish()
                    fields = line[1:].split()
                    if not fields:
                        raise HadError(f"{path}:{number}: header without a name")
                    name, header_line, lines = fields[0].decode(errors="replace"), number, []
                    if name in names:
                        raise HadError(f"{path}:{number}: duplicate record name '{name}'")
                    names.add(name)
                elif line:
                    if name is None:
                        raise HadError(f"{path}:{number}: sequence before the first '>' header")
                    lines.append(line)
    except EOFError:  # gzip stream cut short (click would print only "Aborted.")
        raise HadError(f"{path}: truncated gzip file (unexpected end of data)") from None
    except (zlib.error, gzip.BadGzipFile) as e:
        raise HadError(f"{path}: corrupt gzip file ({e})") from None
    if name is None:
        raise HadError(f"{path}: no FASTA records (empty file or not FASTA)")
    yield finish()


@dataclass(frozen=True)
class _FaiEntry:
    length: int
    offset: int
    line_bases: int
    line_bytes: int


def _read_fai(fai: Path, fasta_size: int | None) -> dict[str, _FaiEntry]:
    entries = {}
    for number, row in enumerate(fai.read_text().splitlines(), start=1):
        fields = row.split("\t")
        try:
            entry = _FaiEntry(*(int(x) for x in fields[1:5]))
        except (ValueError, TypeError):  # TypeError: fewer than 5 columns
            raise HadError(f"{fai}:{number}: expected NAME LENGTH OFFSET LINEBASES LINEWIDTH, got {row!r}") from None
        if entry.line_bases < 1 or entry.line_bytes < entry.line_bases:
            raise HadError(f"{fai}:{number}: malformed index row {row!r}")
        end = entry.offset + _byte_offset(entry, entry.length)
        if fasta_size is not None and end > fasta_size:
            raise HadError(f"{fai}:{number}: index points past the end of the FASTA (stale .fai? re-run samtools faidx)")
        entries[fields[0]] = entry
    if not entries:
        raise HadError(f"{fai}: empty index")
    return entries


def _byte_offset(entry: _FaiEntry, pos: int) -> int:
    return pos // entry.line_bases * entry.line_bytes + pos % entry.line_bases


class FastaFile:
    """Random access to a genome: ``.contigs`` {name: length}, ``.fetch(name, start, end)``.

    An uncompressed FASTA with a samtools ``.fai`` beside it, or a bgzip-compressed one with
    the ``.fai`` and ``.gzi`` of `samtools faidx`, is read on demand (safe after fork: every
    fetch opens the file itself); otherwise (no index, or plain gzip) the whole file is
    parsed into memory once per process.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        fai, gzi = Path(f"{self.path}.fai"), Path(f"{self.path}.gzi")
        gzipped = _is_gzip(self.path)
        self._index: dict[str, _FaiEntry] | None = None
        self._records: dict[str, np.ndarray] | None = None
        self._blocks: tuple[np.ndarray, np.ndarray] | None = None
        if fai.is_file() and (not gzipped or gzi.is_file()):
            self._blocks = _read_gzi(gzi) if gzipped else None
            # a bgzip file's uncompressed size is not known up front: fetch checks each read instead
            self._index = _read_fai(fai, None if gzipped else self.path.stat().st_size)
            self.contigs = {name: e.length for name, e in self._index.items()}
        else:
            self._records = dict(read_fasta(self.path))
            self.contigs = {name: codes.size for name, codes in self._records.items()}

    def fetch(self, name: str, start: int = 0, end: int | None = None) -> np.ndarray:
        """Codes uint8 [end - start] of contig ``name`` over the half-open [start, end)."""
        if name not in self.contigs:
            raise HadError(f"{self.path}: no contig '{name}'")
        length = self.contigs[name]
        end = length if end is None else end
        if not 0 <= start <= end <= length:
            raise HadError(f"{self.path}: {name}:{start}-{end} is outside the contig (length {length})")
        if self._records is not None:
            return self._records[name][start:end]
        entry = self._index[name]
        first = entry.offset + _byte_offset(entry, start)
        raw = self._read(first, entry.offset + _byte_offset(entry, end) - first)
        seq = raw.replace(b"\n", b"").replace(b"\r", b"")
        if len(seq) != end - start or not _IS_LETTER[np.frombuffer(seq, dtype=np.uint8)].all():
            raise HadError(f"{self.path}: {name}:{start}-{end} does not match its .fai (stale index?)")
        return alphabet.encode(seq)


    def _read(self, first: int, size: int) -> bytes:
        """`size` bytes of the uncompressed file from offset `first`."""
        with open(self.path, "rb") as f:
            if self._blocks is None:
                return os.pread(f.fileno(), size, first)
            compressed, uncompressed = self._blocks
            block = int(np.searchsorted(uncompressed, first, side="right")) - 1
            f.seek(int(compressed[block]))
            try:  # BGZF blocks are gzip members: GzipFile reads on across them
                with gzip.GzipFile(fileobj=f) as gz:
                    gz.read(first - int(uncompressed[block]))
                    return gz.read(size)
            except (OSError, EOFError, zlib.error) as e:
                raise HadError(f"{self.path}: corrupt or truncated bgzip data near byte {first} ({e})") from None


def _read_gzi(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A bgzip ``.gzi``: (compressed, uncompressed) start offsets of its blocks, int64 [n + 1] each, (0, 0) first."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little") if len(raw) >= 8 else -1
    if len(raw) != 8 + 16 * n:
        raise HadError(f"{path}: not a bgzip .gzi index ({len(raw)} bytes; re-run samtools faidx)")
    pairs = np.frombuffer(raw, dtype="<u8", offset=8).reshape(n, 2).astype(np.int64)
    return np.concatenate([[0], pairs[:, 0]]), np.concatenate([[0], pairs[:, 1]])


def fasta_fingerprint(path: str | Path) -> str:
    """sha256 of the file's bytes (streamed): identifies the genome a cache was built from."""
    return fingerprint([path], names=False)


@dataclass
class BedIntervals:
    """BED rows in file order: contig str [n], start/end int64 [n] (0-based, half open),
    split str [n] (the 4th column, "" where absent) and line int64 [n] (for messages)."""

    contig: np.ndarray
    start: np.ndarray
    end: np.ndarray
    split: np.ndarray
    line: np.ndarray
    path: Path


def read_bed(path: str | Path) -> BedIntervals:
    """Read chrom, start, end[, split] rows; '#', 'track' and 'browser' lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise HadError(f"BED file not found: {path}")
    rows = []
    for number, row in enumerate(path.read_text().splitlines(), start=1):
        if not row.strip() or row.startswith(("#", "track", "browser")):
            continue
        fields = row.split("\t") if "\t" in row else row.split()
        try:
            contig, start, end = fields[0], int(fields[1]), int(fields[2])
        except (IndexError, ValueError):
            raise HadError(f"{path}:{number}: expected CHROM START END [SPLIT], got {row!r}") from None
        if not 0 <= start < end:
            raise HadError(f"{path}:{number}: need 0 <= start < end, got {start} {end}")
        rows.append((contig, start, end, fields[3].strip() if len(fields) > 3 else "", number))
    if not rows:
        raise HadError(f"{path}: no intervals")
    contig, start, end, split, line = zip(*rows)
    return BedIntervals(np.array(contig), np.array(start, dtype=np.int64), np.array(end, dtype=np.int64),
                        np.array(split), np.array(line, dtype=np.int64), path)


@dataclass
class WindowTable:
    """The windows of a genome, as numpy columns (cheap to fork into DataLoader workers).

    window_id int64 [n] is the window's position among all candidate windows, before
    the N filter, so a window keeps its id (and its masks) if max_n_fraction changes.
    contig int32 [n] indexes ``contigs``; start/end int64 [n] are 0-based, half open.
    """

    contigs: tuple[str, ...]
    window_id: np.ndarray
    contig: np.ndarray
    start: np.ndarray
    end: np.ndarray
    n_candidates: int  # windows before the N filter
    n_skipped_n: int  # windows dropped because their N fraction exceeded max_n_fraction
    intervals: str  # what was tiled: "contigs of FASTA" or "rows of BED"
    n_intervals: int
    n_short: int  # intervals shorter than one window: no window at all
    short_nt: int  # their nucleotides
    uncovered_nt: int  # nucleotides of the other intervals under no window (tails; gaps when stride > window)

    def __len__(self) -> int:
        return self.window_id.size

    def coverage(self) -> str:
        """One line on what the windows leave out, e.g. for a dry run or a run's summary."""
        return (f"{self.n_short} of {self.n_intervals} {self.intervals} shorter than the window skipped "
                f"({self.short_nt} nt); {self.uncovered_nt} nt of the others under no window (tails)")

    def locus(self, i: int) -> tuple[str, int, int]:
        """(contig name, start, end) of the i-th kept window."""
        return self.contigs[self.contig[i]], int(self.start[i]), int(self.end[i])


def iter_windows(cfg: WindowSpec) -> WindowTable:
    """Cut the genome of ``cfg`` into windows of ``cfg.window`` nt every ``cfg.stride`` nt.

    Windows tile each selected contig (in FASTA order) or each BED interval (in file
    order) from its start; a tail shorter than a window is dropped. Deterministic for
    a given config and FASTA. The numbers (window, stride >= 1, max_n_fraction in [0, 1]) come
    checked by the `genome:` section that holds them; the files are checked here.
    """
    stride = cfg.window if cfg.stride is None else cfg.stride
    if not cfg.fasta:
        raise HadError("genome.fasta is not set")
    fasta = FastaFile(cfg.fasta)
    for option, names in (("genome.contigs", cfg.contigs), ("genome.exclude_contigs", cfg.exclude_contigs)):
        unknown = [c for c in names if c not in fasta.contigs]
        if unknown:
            raise HadError(f"{option}: {unknown} not in {cfg.fasta} (contigs: {list(fasta.contigs)[:10]}...)")
    keep = [c for c in fasta.contigs if (not cfg.contigs or c in cfg.contigs) and c not in cfg.exclude_contigs]

    contig_ids, starts = [], []
    intervals = _intervals(cfg, fasta, keep)
    n_short = short_nt = uncovered_nt = 0
    for index, lo, hi in intervals:
        first = np.arange(lo, hi - cfg.window + 1, stride, dtype=np.int64)
        contig_ids.append(np.full(first.size, index, dtype=np.int32))
        starts.append(first)
        if first.size == 0:
            n_short, short_nt = n_short + 1, short_nt + hi - lo
        else:
            uncovered_nt += hi - lo - ((first.size - 1) * min(stride, cfg.window) + cfg.window)
    contig = np.concatenate(contig_ids) if contig_ids else np.zeros(0, np.int32)
    start = np.concatenate(starts) if starts else np.zeros(0, np.int64)

    kept = _n_count(fasta, keep, contig, start, cfg.window) <= cfg.max_n_fraction * cfg.window
    return WindowTable(
        contigs=tuple(keep),
        window_id=np.flatnonzero(kept).astype(np.int64),
        contig=contig[kept],
        start=start[kept],
        end=start[kept] + cfg.window,
        n_candidates=int(start.size),
        n_skipped_n=int((~kept).sum()),
        intervals=(f"rows of {cfg.bed}" + (f" in split '{cfg.split}'" if cfg.split is not None else "")
                   if cfg.bed else f"contigs of {cfg.fasta}"),
        n_intervals=len(intervals),
        n_short=n_short,
        short_nt=int(short_nt),
        uncovered_nt=int(uncovered_nt),
    )


def _intervals(cfg: WindowSpec, fasta: FastaFile, keep: list[str]) -> list[tuple[int, int, int]]:
    """(index into keep, start, end) of the stretches to tile: whole contigs, or BED rows."""
    if not cfg.bed:
        if cfg.split is not None:
            raise HadError("genome.split is set but genome.bed is not: a split needs a BED file")
        return [(index, 0, fasta.contigs[name]) for index, name in enumerate(keep)]
    bed = read_bed(cfg.bed)
    splits = sorted(set(bed.split.tolist()))
    if cfg.split is not None and splits == [""]:
        raise HadError(f"genome.split '{cfg.split}': {bed.path} has no 4th (split) column")
    if cfg.split is not None and cfg.split not in splits:
        raise HadError(f"genome.split '{cfg.split}': no row of {bed.path} has it in its 4th column "
                       f"(values there: {', '.join(map(repr, splits[:10]))}{', ...' if len(splits) > 10 else ''})")
    position = {name: index for index, name in enumerate(keep)}
    out = []
    for contig, lo, hi, split, line in zip(bed.contig, bed.start, bed.end, bed.split, bed.line):
        if contig not in fasta.contigs:
            raise HadError(f"{bed.path}:{line}: contig '{contig}' is not in {cfg.fasta}")
        if hi > fasta.contigs[contig]:
            raise HadError(f"{bed.path}:{line}: end {hi} is past the end of {contig} (length {fasta.contigs[contig]})")
        if contig in position and (cfg.split is None or split == cfg.split):
            out.append((position[contig], int(lo), int(hi)))
    return out


def _n_count(fasta: FastaFile, names: list[str], contig: np.ndarray, start: np.ndarray, window: int) -> np.ndarray:
    """Number of N in each window, int64 [n], reading each contig in blocks of ~_BLOCK nt."""
    counts = np.zeros(start.size, dtype=np.int64)
    block = start // _BLOCK
    for index, name in enumerate(names):
        on_contig = contig == index
        for b in np.unique(block[on_contig]):
            rows = np.flatnonzero(on_contig & (block == b))
            lo, hi = int(start[rows].min()), int(start[rows].max()) + window
            # Positions of N, searched: cheaper than a cumulative sum when N is rare (most of a genome).
            n_at = np.flatnonzero(fasta.fetch(name, lo, hi) == alphabet.N)
            first = start[rows] - lo
            counts[rows] = np.searchsorted(n_at, first + window) - np.searchsorted(n_at, first)
    return counts
