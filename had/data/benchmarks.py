"""Downstream benchmark loaders: Nucleotide Transformer (NT), Genomic Benchmarks (GB), GUE.

Every loader reads the layout the benchmark is published in, under one root folder:

    nt   <root>/<task>/{train,test}.parquet   columns sequence, label [, name, task]
         <root>/<task>/{train,test}.fna       records `>name|label` then the sequence
    gb   <root>/<name>/{train,test}/<class>/<id>.txt   one raw sequence per file;
                                              class folders sorted by name -> label ids
         <root>/<name>/{train,test}.parquet   columns seq, label (the HF copies)
    gue  <root>/<group>/<task>/{train,dev,test}.csv   header sequence,label

A parquet split may also be sharded the HF way (`<split>-00000-of-00002.parquet`, in the
task folder or its `data/` folder). Row counts and label sets come from the data: the
classes of a task are the labels found in its train split, and a dev/test label outside
them is an error. Any mistake in the data raises HadError naming the file and the line
(text formats) or row (parquet, first row = 1).

    task = load_task("gue", "../shared/data/real/GUE", "prom/prom_core_tata")
    task.train.sequences[0], task.train.labels[:5], task.classes   # ['0', '1']
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from had.errors import HadError

BENCHMARKS = ("nt", "gb", "gue")
NT_VERSIONS = ("original", "revised")
_LAYOUT = {
    "nt": "<task>/train.parquet or <task>/train.fna",
    "gb": "<name>/train/<class>/*.txt or <name>/train.parquet",
    "gue": "<group>/<task>/train.csv",
}
# IUPAC nucleotide codes (U included) in either case; the alphabet maps all but ACGT to N.
_DNA = "ACGTURYSWKMBDHVN"
_NON_DNA = str.maketrans("", "", _DNA + _DNA.lower())


@dataclass
class Split:
    """One split of a task: sequences and their class ids (int64 [n], 0..n_classes-1)."""

    sequences: list[str]
    labels: np.ndarray
    source: str  # the file or folder it was read from

    def __len__(self) -> int:
        return len(self.sequences)


@dataclass
class BenchmarkTask:
    benchmark: str  # nt | gb | gue
    name: str  # folder name under the root (GUE: "<group>/<task>")
    classes: list[str]  # class names; class id = index
    train: Split
    test: Split
    dev: Split | None = None  # a given validation split (GUE); None = split train 90/10
    nt_version: str | None = None  # NT only: original | revised

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def discover_tasks(benchmark: str, root: str | Path) -> list[str]:
    """Names of every task under `root` in the layout of `benchmark`, sorted."""
    root = _check_root(benchmark, root)
    if benchmark == "gue":
        names = [p.parent.relative_to(root).as_posix() for p in root.glob("*/*/train.csv")]
    else:
        names = [p.name for p in root.iterdir() if p.is_dir() and _has_train(benchmark, p)]
    if not names:
        raise HadError(f"no {benchmark} tasks found under {root} (expected {_LAYOUT[benchmark]})")
    return sorted(names)


def load_task(benchmark: str, root: str | Path, name: str, nt_version: str = "revised") -> BenchmarkTask:
    """Read one task (all its splits) and check every row."""
    root = _check_root(benchmark, root)
    folder = root / name
    if not folder.is_dir():
        known = ", ".join(discover_tasks(benchmark, root))
        raise HadError(f"no task '{name}' under {root} (tasks found: {known})")
    if benchmark == "nt":
        if nt_version not in NT_VERSIONS:
            raise HadError(f"eval.nt_version must be one of {NT_VERSIONS}, got '{nt_version}'")
        read = _read_nt
    elif benchmark == "gb":
        read = _read_gb
    else:
        read = _read_gue
    splits = ("train", "dev", "test") if benchmark == "gue" else ("train", "test")
    raw = {s: read(folder, s) for s in splits}
    classes = _classes(raw["train"])
    parts = {s: _to_split(raw[s], classes) for s in splits}
    return BenchmarkTask(
        benchmark=benchmark, name=name, classes=classes, train=parts["train"], test=parts["test"],
        dev=parts.get("dev"), nt_version=nt_version if benchmark == "nt" else None,
    )



def _check_root(benchmark: str, root: str | Path) -> Path:
    if benchmark not in BENCHMARKS:
        raise HadError(f"eval.benchmark must be one of {BENCHMARKS}, got '{benchmark}'")
    if not str(root) or not Path(root).is_dir():
        raise HadError(f"eval.data_root: benchmark folder not found: '{root}'")
    return Path(root)


def _has_train(benchmark: str, folder: Path) -> bool:
    if _parquet_files(folder, "train"):
        return True
    return (folder / "train.fna").is_file() if benchmark == "nt" else (folder / "train").is_dir()


@dataclass
class _Rows:
    """A split as read, before checks: `where[i]` names row i (file + line/row) for errors."""

    sequences: list[str]
    labels: list[str]
    source: str
    where: list[str]
    named_classes: bool = False  # labels are class names (GB folders), not integers


def _read_nt(folder: Path, split: str) -> _Rows:
    if _parquet_files(folder, split):
        return _read_parquet(folder, split, "sequence")
    path = folder / f"{split}.fna"
    if not path.is_file():
        raise HadError(f"{folder}: missing {split} split (expected {split}.parquet or {split}.fna)")
    return _read_fna(path)


def _read_gb(folder: Path, split: str) -> _Rows:
    if _parquet_files(folder, split):
        return _read_parquet(folder, split, "seq")
    split_dir = folder / split
    if not split_dir.is_dir():
        raise HadError(f"{folder}: missing {split} split (expected {split}/<class>/*.txt or {split}.parquet)")
    seqs, labels, where = [], [], []
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        for path in sorted(class_dir.glob("*.txt"), key=_natural_key):
            seqs.append("".join(path.read_text().split()))
            labels.append(class_dir.name)
            where.append(str(path))
    if not seqs:
        raise HadError(f"{split_dir}: empty split (no <class>/*.txt files)")
    return _Rows(seqs, labels, str(split_dir), where, named_classes=True)


def _read_gue(folder: Path, split: str) -> _Rows:
    path = folder / f"{split}.csv"
    if not path.is_file():
        raise HadError(f"{folder}: missing {split} split ({split}.csv)")
    with path.open(newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None:
            raise HadError(f"{path}: empty file")
        if "sequence" not in header or "label" not in header:
            raise HadError(f"{path} line 1: header must have columns sequence,label, found {header}")
        i_seq, i_label = header.index("sequence"), header.index("label")
        seqs, labels, where = [], [], []
        for line, row in enumerate(rows, start=2):
            if not row:  # a blank line, e.g. the trailing ones many exports and editors leave
                continue
            if len(row) != len(header):
                raise HadError(f"{path} line {line}: {len(row)} fields, header has {len(header)}")
            seqs.append(row[i_seq])
            labels.append(row[i_label])
            where.append(f"{path} line {line}")
    if not seqs:
        raise HadError(f"{path}: empty file (a header and no rows)")
    return _Rows(seqs, labels, str(path), where)


def _parquet_files(folder: Path, split: str) -> list[Path]:
    single = folder / f"{split}.parquet"
    if single.is_file():
        return [single]
    return sorted(folder.glob(f"{split}-*.parquet")) or sorted(folder.glob(f"data/{split}-*.parquet"))


def _read_parquet(folder: Path, split: str, seq_column: str) -> _Rows:
    from had.data.parquet import read_table

    seqs, labels, where = [], [], []
    for path in _parquet_files(folder, split):
        try:
            table = read_table(path)
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise HadError(f"{path}: not a readable parquet file: {e}") from None
        missing = {seq_column, "label"} - set(table.column_names)
        if missing:
            raise HadError(f"{path}: missing column(s) {sorted(missing)}, found {table.column_names}")
        seqs += [str(s) if s is not None else "" for s in table.column(seq_column).to_pylist()]
        labels += [str(v) if v is not None else "" for v in table.column("label").to_pylist()]
        where += [f"{path} row {i}" for i in range(1, table.num_rows + 1)]
    if not seqs:
        raise HadError(f"{folder}: empty {split} split (parquet file(s) with no rows)")
    return _Rows(seqs, labels, str(folder / f"{split}.parquet"), where)


def _read_fna(path: Path) -> _Rows:
    seqs, labels, where = [], [], []
    chunks: list[str] = []
    with path.open() as f:
        for line_no, line in enumerate(f, start=1):
            line = line.strip()
            if line.startswith(">"):
                if where and not chunks:
                    raise HadError(f"{where[-1]}: record has no sequence")
                if chunks:
                    seqs.append("".join(chunks))
                    chunks = []
                name, sep, label = line[1:].rpartition("|")
                if not sep:
                    raise HadError(f"{path} line {line_no}: header must be '>name|label', got '{line}'")
                labels.append(label.strip())
                where.append(f"{path} line {line_no}")
            elif line:
                if not where:
                    raise HadError(f"{path} line {line_no}: sequence before the first '>name|label' header")
                chunks.append(line)
    if not where:
        raise HadError(f"{path}: empty file (no '>name|label' records)")
    if not chunks:
        raise HadError(f"{where[-1]}: record has no sequence")
    seqs.append("".join(chunks))
    return _Rows(seqs, labels, str(path), where)


def _classes(train: _Rows) -> list[str]:
    """The label set of train: folder names sorted, or integer labels sorted numerically."""
    if train.named_classes:
        return sorted(set(train.labels))
    for label, where in zip(train.labels, train.where):
        if not _is_int(label):
            raise HadError(f"{where}: label '{label}' is not an integer")
    return [str(v) for v in sorted({int(v) for v in train.labels})]


def _to_split(rows: _Rows, classes: list[str]) -> Split:
    seqs, labels, where = rows.sequences, rows.labels, rows.where
    class_id = {c: i for i, c in enumerate(classes)}
    ids = np.empty(len(labels), dtype=np.int64)
    for i, (seq, label) in enumerate(zip(seqs, labels)):
        if not seq:
            raise HadError(f"{where[i]}: empty sequence")
        bad = seq.translate(_NON_DNA)
        if bad:
            raise HadError(f"{where[i]}: non-DNA character {bad[0]!r} in sequence")
        key = label if rows.named_classes or not _is_int(label) else str(int(label))
        if key not in class_id:
            raise HadError(f"{where[i]}: label '{label}' is not one of the classes in train {classes}")
        ids[i] = class_id[key]
    return Split(sequences=seqs, labels=ids, source=rows.source)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _natural_key(path: Path) -> tuple:
    stem = path.stem
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)
