"""Benchmark loaders: every real layout, equal datasets from equal data, errors naming file and row."""
import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from had.data.benchmarks import discover_tasks, load_task
from had.errors import HadError

GUE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real" / "GUE"


def _rows(seed: int, n: int, n_classes: int = 2) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(seed)
    seqs = ["".join(rng.choice(list("ACGTNacgtRY"), size=rng.integers(5, 40))) for _ in range(n)]
    labels = [int(v) for v in rng.permutation(np.arange(n) % n_classes)]
    return seqs, labels


def _write_parquet(path: Path, seqs, labels, seq_column="sequence"):
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [f"row{i}" for i in range(len(seqs))]
    pq.write_table(pa.table({seq_column: seqs, "label": labels, "name": names}), path)


def _write_fna(path: Path, seqs, labels, width=17):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for i, (s, y) in enumerate(zip(seqs, labels)):
            f.write(f">row{i}|{y}\n")
            f.writelines(s[j:j + width] + "\n" for j in range(0, len(s), width))  # multi-line records


def _write_csv(path: Path, seqs, labels):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sequence", "label"])
        w.writerows(zip(seqs, labels))


def _assert_same(a, b):
    for split in ("train", "test"):
        assert getattr(a, split).sequences == getattr(b, split).sequences
        np.testing.assert_array_equal(getattr(a, split).labels, getattr(b, split).labels)


def _nt_fixture(root: Path, form: str, task="H3K4me3", n_classes=2):
    for split, seed in (("train", 1), ("test", 2)):
        seqs, labels = _rows(seed, 30, n_classes)
        if form == "parquet":
            _write_parquet(root / task / f"{split}.parquet", seqs, labels)
        else:
            _write_fna(root / task / f"{split}.fna", seqs, labels)
    return root


def test_nt_parquet_and_fna_forms_give_identical_datasets(tmp_path):
    a = load_task("nt", _nt_fixture(tmp_path / "pq", "parquet"), "H3K4me3", nt_version="original")
    b = load_task("nt", _nt_fixture(tmp_path / "fna", "fna"), "H3K4me3", nt_version="original")
    _assert_same(a, b)
    assert a.classes == b.classes == ["0", "1"] and a.nt_version == "original" and a.dev is None
    seqs, labels = _rows(1, 30)
    assert a.train.sequences == seqs and a.train.labels.tolist() == labels  # re-read from scratch


def test_nt_hf_sharded_parquet_is_concatenated(tmp_path):
    seqs, labels = _rows(3, 20)
    for split in ("train", "test"):
        _write_parquet(tmp_path / "enhancers" / "data" / f"{split}-00000-of-00002.parquet", seqs[:7], labels[:7])
        _write_parquet(tmp_path / "enhancers" / "data" / f"{split}-00001-of-00002.parquet", seqs[7:], labels[7:])
    task = load_task("nt", tmp_path, "enhancers")
    assert task.train.sequences == seqs and task.test.labels.tolist() == labels


def test_gb_folders_and_hf_parquet_give_identical_datasets(tmp_path):
    classes = ["negative", "positive"]
    for split, seed in (("train", 4), ("test", 5)):
        seqs, labels = _rows(seed, 25)
        # file ids numbered so that the natural order (2 before 10) is the row order
        order = {c: 0 for c in classes}
        by_class = sorted(zip(labels, seqs), key=lambda x: x[0])  # folder reading goes class by class
        for y, s in by_class:
            d = tmp_path / "dirs" / "human_nontata_promoters" / split / classes[y]
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{order[classes[y]]}.txt").write_text(s[:10] + "\n" + s[10:] + "\n")
            order[classes[y]] += 1
        _write_parquet(tmp_path / "hf" / "human_nontata_promoters" / f"{split}.parquet",
                       [s for _, s in by_class], [y for y, _ in by_class], seq_column="seq")
    a = load_task("gb", tmp_path / "dirs", "human_nontata_promoters")
    b = load_task("gb", tmp_path / "hf", "human_nontata_promoters")
    _assert_same(a, b)
    assert a.classes == classes and b.classes == ["0", "1"]
    assert discover_tasks("gb", tmp_path / "dirs") == discover_tasks("gb", tmp_path / "hf") == ["human_nontata_promoters"]


def test_discovery_and_multiclass_labels(tmp_path):
    _nt_fixture(tmp_path, "parquet", task="enhancers_types", n_classes=3)
    _nt_fixture(tmp_path, "fna", task="H3")
    (tmp_path / "not_a_task").mkdir()
    assert discover_tasks("nt", tmp_path) == ["H3", "enhancers_types"]
    task = load_task("nt", tmp_path, "enhancers_types")
    assert task.n_classes == 3 and set(task.test.labels.tolist()) == {0, 1, 2}


@pytest.mark.skipif(not GUE.is_dir(), reason=f"{GUE} absent (the shared real data is not mounted)")
def test_gue_loader_on_the_real_tasks():
    tasks = discover_tasks("gue", GUE)
    assert "prom/prom_core_tata" in tasks and "tf/0" in tasks
    for name in tasks:
        task = load_task("gue", GUE, name)
        for split in ("train", "dev", "test"):
            with (GUE / name / f"{split}.csv").open() as f:
                rows = list(csv.DictReader(f))
            got = getattr(task, split)
            assert got.sequences == [r["sequence"] for r in rows]
            assert got.labels.tolist() == [int(r["label"]) for r in rows]
        assert task.classes == sorted({r["label"] for r in rows}, key=int)


def _gue(tmp_path, **overrides):
    seqs, labels = _rows(6, 12)
    for split in ("train", "dev", "test"):
        s, y = overrides.get(split, (seqs, labels))
        _write_csv(tmp_path / "prom" / "p" / f"{split}.csv", s, y)
    return tmp_path


@pytest.mark.parametrize("make, where, message", [
    (lambda p: (_gue(p), (p / "prom/p/dev.csv").unlink()), "prom/p", "missing dev split"),
    (lambda p: (_gue(p), (p / "prom/p/test.csv").write_text("")), "test.csv", "empty file"),
    (lambda p: (_gue(p), (p / "prom/p/test.csv").write_text("sequence,label\n")), "test.csv", "empty file"),
    (lambda p: _gue(p, test=(["ACGT", "ACGT", "ACGT"], [0, 1, 2])), "test.csv line 4", "label '2' is not one of"),
    (lambda p: _gue(p, dev=(["ACGT", "AC1T"], [0, 1])), "dev.csv line 3", "non-DNA character '1'"),
    (lambda p: _gue(p, train=(["ACGT", "AC-T"], [0, 1])), "train.csv line 3", "non-DNA character '-'"),
    (lambda p: _gue(p, train=(["ACGT", ""], [0, 1])), "train.csv line 3", "empty sequence"),
    (lambda p: _gue(p, train=(["ACGT", "ACGT"], [0, "x"])), "train.csv line 3", "not an integer"),
], ids=["missing-split", "empty-file", "header-only", "label-outside-classes", "digit", "dash", "empty-seq",
        "non-integer-label"])
def test_gue_bad_inputs_name_file_and_row(tmp_path, make, where, message):
    make(tmp_path)
    with pytest.raises(HadError, match=message) as e:
        load_task("gue", tmp_path, "prom/p")
    assert where in str(e.value)


def test_nt_and_gb_bad_inputs_name_file_and_row(tmp_path):
    _nt_fixture(tmp_path / "a", "parquet")
    _write_parquet(tmp_path / "a" / "H3K4me3" / "test.parquet", ["ACGT", "ACGTZ"], [0, 1])
    with pytest.raises(HadError, match=r"test.parquet row 2: non-DNA character 'Z'"):
        load_task("nt", tmp_path / "a", "H3K4me3")
    _nt_fixture(tmp_path / "b", "fna")
    (tmp_path / "b" / "H3K4me3" / "test.fna").write_text(">r0|0\nACGT\n>r1 no label\nACGT\n")
    with pytest.raises(HadError, match=r"test.fna line 3: header must be '>name\|label'"):
        load_task("nt", tmp_path / "b", "H3K4me3")
    (tmp_path / "b" / "H3K4me3" / "test.fna").write_text(">r0|0\nACGT\n>r1|1\n")
    with pytest.raises(HadError, match=r"test.fna line 3: record has no sequence"):
        load_task("nt", tmp_path / "b", "H3K4me3")
    (tmp_path / "b" / "H3K4me3" / "test.fna").unlink()
    with pytest.raises(HadError, match="missing test split"):
        load_task("nt", tmp_path / "b", "H3K4me3")
    with pytest.raises(HadError, match="nt_version"):
        load_task("nt", tmp_path / "a", "H3K4me3", nt_version="v3")
    gb = tmp_path / "gb" / "demo" / "train"
    for c in ("neg", "pos"):
        (gb / c).mkdir(parents=True)
        (gb / c / "0.txt").write_text("ACGT\n")
    (tmp_path / "gb" / "demo" / "test" / "other").mkdir(parents=True)
    (tmp_path / "gb" / "demo" / "test" / "other" / "7.txt").write_text("ACGT\n")
    with pytest.raises(HadError, match=r"other/7.txt: label 'other' is not one of the classes"):
        load_task("gb", tmp_path / "gb", "demo")
    with pytest.raises(HadError, match="no task 'nope'.*tasks found: demo"):
        load_task("gb", tmp_path / "gb", "nope")


def test_gue_blank_lines_are_skipped_and_line_numbers_kept(tmp_path):
    clean = load_task("gue", _gue(tmp_path / "clean"), "prom/p")
    blank = _gue(tmp_path / "blank")
    for split, tail in (("train", "\n\n"), ("dev", "\r\n"), ("test", "\n")):
        with (blank / "prom/p" / f"{split}.csv").open("a", newline="") as f:
            f.write(tail)
    got = load_task("gue", blank, "prom/p")
    for split in ("train", "dev", "test"):
        assert getattr(got, split).sequences == getattr(clean, split).sequences
        assert getattr(got, split).labels.tolist() == getattr(clean, split).labels.tolist()
    # a blank line inside the file still counts for the line numbers of later rows
    train = blank / "prom/p/train.csv"
    lines = train.read_text().splitlines()
    train.write_text("\n".join(lines[:2] + ["", "AC-T,1"] + lines[2:]) + "\n")
    with pytest.raises(HadError, match=r"train.csv line 4: non-DNA character '-'"):
        load_task("gue", blank, "prom/p")
