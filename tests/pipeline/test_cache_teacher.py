"""`had cache-teacher` end to end on a tiny genome with the tiny teacher (CPU).

References are independent of the pipeline: the FASTA re-read by hand, HF's own
EsmModel forward on one window at a time, zarr-python, and an uninterrupted run.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import EsmForMaskedLM

from had import featurize
from had.cache_store import CacheReader, Storage
from had.config import MaskConfig, TeacherConfig, load_config
from had.data.masking import grouping_mask
from had.data.tokenizer import NTv2Tokenizer
from had.errors import HadError
from had.pipeline import cache_teacher
from had.teacher import build_tiny_teacher

WINDOW = 96
CODE = {b: i for i, b in enumerate("ACGT")}
COMPLEMENT = [3, 2, 1, 0, 4]


def _random_contig(rng, n):
    seq = list("".join(rng.choice(list("ACGT"), n)))
    seq[100:130] = "N" * 30  # an N run: its own tokens, cuts 6-mer runs
    seq[400:460] = [c.lower() for c in seq[400:460]]  # soft-masked
    seq[700] = "R"  # IUPAC -> N
    return "".join(seq)


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    rng = np.random.default_rng(0)
    contigs = {"chrA": _random_contig(rng, 1500), "chrB": _random_contig(rng, 960)}
    path = tmp_path_factory.mktemp("genome") / "g.fa"
    path.write_text("".join(f">{n} test\n" + "\n".join(s[i:i + 60] for i in range(0, len(s), 60)) + "\n"
                            for n, s in contigs.items()))
    return path, contigs


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return build_tiny_teacher(tmp_path_factory.mktemp("teacher"), hidden_size=32, num_layers=2, num_heads=4)


def make_cfg(genome, teacher_dir, out, **overrides):
    base = {"genome.fasta": str(genome[0]), "genome.window": WINDOW, "teacher.model": str(teacher_dir),
            "teacher.device": "cpu", "teacher.dtype": "fp32", "teacher.max_tokens_per_batch": 512,
            "mask.views": 1, "mask.reverse_complement": True, "cache.path": str(out),
            "cache.shard_windows": 10, "cache.workers": 1}
    return load_config(None, base | overrides)


@pytest.fixture(scope="module")
def reference(genome, teacher_dir, tmp_path_factory):
    """An uninterrupted run that other tests compare against."""
    out = tmp_path_factory.mktemp("ref") / "cache"
    cache_teacher.run(make_cfg(genome, teacher_dir, out))
    return out


def _files(root: Path, config: bool = False) -> dict[str, bytes]:
    """Every file of a cache; manifest without its timestamp, config.yaml (holds the path) left out unless config."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and (config or path.name != "config.yaml"):
            data = path.read_bytes()
            if path.name == "manifest.json":
                manifest = json.loads(data)
                manifest.pop("created")
                data = json.dumps(manifest, sort_keys=True).encode()
            out[str(path.relative_to(root))] = data
    return out


def test_items_equal_fasta_tokenizer_masks_and_a_direct_teacher_forward(genome, teacher_dir, reference):
    reader = CacheReader(str(reference))
    tok = NTv2Tokenizer.from_dir(teacher_dir)
    model = EsmForMaskedLM.from_pretrained(teacher_dir).esm.eval()
    windows = [(name, s) for name, seq in genome[1].items() for s in range(0, len(seq) - WINDOW + 1, WINDOW)]
    assert len(reader) == 2 * len(windows) and reader.manifest["n_items"] == len(reader)
    assert reader.manifest["teacher_dim"] == 32 and reader.manifest["window"] == WINDOW
    for i in range(len(reader)):
        item = reader[i]
        w, view = divmod(i, 2)
        name, start = windows[w]
        codes = np.array([CODE.get(c, 4) for c in genome[1][name][start:start + WINDOW].upper()], np.uint8)
        if view == 1:
            codes = np.array([COMPLEMENT[c] for c in codes[::-1]], np.uint8)
        assert np.array_equal(item.nucleotides, codes)
        ids, spans = tok.tokenize(codes)
        assert np.array_equal(item.spans, spans)
        masked, _ = grouping_mask(tok.maskable(ids), spans, WINDOW, 0.15, 0, w, view)
        assert np.array_equal(item.token_masked, masked)
        expected_nt = np.zeros(WINDOW, bool)
        for (s, n) in spans[masked]:
            assert n == 6
            expected_nt[s:s + n] = True
        assert np.array_equal(item.nt_mask, expected_nt)
        shown = np.concatenate([[tok.cls_id], np.where(masked, tok.mask_id, ids)])
        with torch.no_grad():
            direct = model(input_ids=torch.from_numpy(shown)[None]).last_hidden_state[0, 1:].numpy()
        visible = direct[~masked]
        assert item.features.shape == visible.shape
        np.testing.assert_allclose(item.features, visible, atol=2e-3, rtol=2e-3)  # fp16 storage


def test_ntv2_cache_bitwise_identical_to_before_the_tokenizer_families(reference):
    """sha256 of every item's nucleotides, nt_mask, spans, token_masked (and feature row count) of the
    reference cache, recorded with had at 5dbdfc8, before the teacher-agnostic tokenizers."""
    reader, h = CacheReader(str(reference)), hashlib.sha256()
    for i in range(len(reader)):
        item = reader[i]
        for key in ("nucleotides", "nt_mask", "spans", "token_masked"):
            h.update(np.ascontiguousarray(getattr(item, key)).tobytes())
        h.update(str(item.features.shape).encode())
    assert h.hexdigest() == "229c2bcf900d9c02828aab4110df9f3213cfea3e089e663fc1ea304bd0bc0247"
    assert reader.manifest["tokenizer_family"] == "kmer" and reader.manifest["tokenizer_specials"] == 1


GOLDEN_FILES = Path(__file__).resolve().parent / "golden_cache_files.json"


def _file_hashes(root: Path, replace: dict[str, str]) -> dict[str, str]:
    """sha256 of every file of a cache (_files, config.yaml kept), the run's temporary paths replaced by names."""
    out = {}
    for name, data in _files(root, config=True).items():
        for old, new in replace.items():
            data = data.replace(old.encode(), new.encode())
        out[name] = hashlib.sha256(data).hexdigest()
    return out


@pytest.mark.parametrize("dtype", ["fp16", "bf16", "int8"])
def test_whole_cache_bitwise_identical_to_the_recorded_one(genome, teacher_dir, reference, tmp_path, dtype):
    """Every file of a cache per feature dtype equals the one had wrote at 9ddff3b (before the cache-side
    refactor of issue 15). Features (and the records holding their checksums) depend on the CPU's kernels:
    they are compared on the torch build and CPU capability that recorded them, the other files everywhere.
    HAD_UPDATE_GOLDEN=1 re-records."""
    out = reference if dtype == "fp16" else tmp_path / "cache"
    if dtype != "fp16":
        cache_teacher.run(make_cfg(genome, teacher_dir, out, **{"cache.feature_dtype": dtype}))
    replace = {str(out): "<out>", str(genome[0]): "<fasta>", str(teacher_dir): "<teacher>"}
    got = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "files": _file_hashes(out, replace)}
    golden = json.loads(GOLDEN_FILES.read_text()) if GOLDEN_FILES.exists() else {}
    if os.environ.get("HAD_UPDATE_GOLDEN") == "1":
        GOLDEN_FILES.write_text(json.dumps(golden | {dtype: got}, indent=1, sort_keys=True) + "\n")
        golden[dtype] = got
    want = golden[dtype]
    assert sorted(got["files"]) == sorted(want["files"])
    if (got["torch"], got["cpu_capability"]) == (want["torch"], want["cpu_capability"]):
        assert got["files"] == want["files"]
        return
    numeric = ("features/", "scales/", "chan_mean/", "chan_std/", "_commit/", "manifest.json")
    assert {k: v for k, v in got["files"].items() if not k.startswith(numeric)} == \
        {k: v for k, v in want["files"].items() if not k.startswith(numeric)}


def test_rerun_is_a_no_op_and_other_configs_are_refused(genome, teacher_dir, reference, tmp_path, capsys):
    out = tmp_path / "cache"
    cache_teacher.run(make_cfg(genome, teacher_dir, out))
    tails = sum(len(seq) % WINDOW for seq in genome[1].values())
    assert f"not covered: 0 of 2 contigs of {genome[0]} shorter than the window skipped (0 nt); {tails} nt" \
        in capsys.readouterr().out
    before = _files(out)
    assert before == _files(reference)
    cache_teacher.run(make_cfg(genome, teacher_dir, out))  # resume: everything committed
    assert _files(out) == before
    with pytest.raises(HadError, match="differs in: mask"):
        cache_teacher.run(make_cfg(genome, teacher_dir, out, **{"mask.ratio": 0.3}))
    other = build_tiny_teacher(tmp_path / "other", hidden_size=32, num_layers=2, num_heads=4, seed=7)
    with pytest.raises(HadError, match="teacher_fingerprint"):
        cache_teacher.run(make_cfg(genome, teacher_dir, out, **{"teacher.model": str(other)}))
    assert _files(out) == before  # untouched
    cache_teacher.run(make_cfg(genome, teacher_dir, out, **{"mask.ratio": 0.3, "cache.overwrite": True}))
    assert CacheReader(str(out)).manifest["mask"]["ratio"] == 0.3


def test_overwrite_only_ever_replaces_a_had_cache(genome, teacher_dir, reference, tmp_path, capsys):
    import shutil

    import zarr

    user = tmp_path / "user"
    (user / "sub").mkdir(parents=True)
    (user / "important.txt").write_text("hi")
    (user / "sub" / "data.csv").write_text("x")
    plain_zarr = tmp_path / "plain_zarr"  # someone else's zarr store: a zarr.json without had's attributes
    zarr.create_array(str(plain_zarr), shape=(3,), dtype="i4")
    mixed = tmp_path / "mixed"  # a had cache of another config with a user file beside it
    shutil.copytree(reference, mixed)
    (mixed / "notes.txt").write_text("mine")
    snapshot = {d: _files(d) for d in (user, plain_zarr, mixed)}
    for target in (user, plain_zarr, mixed):
        for overwrite in (False, True):
            override = {"cache.overwrite": overwrite} | ({"mask.ratio": 0.3} if target == mixed else {})
            with pytest.raises(HadError, match=str(target)) as e:
                cache_teacher.run(make_cfg(genome, teacher_dir, target, **override))
            assert "--overwrite" not in str(e.value) and "cache.overwrite" not in str(e.value)
            with pytest.raises(HadError, match=str(target)):
                cache_teacher.run(make_cfg(genome, teacher_dir, target, **override), dry_run=True)
    assert {d: _files(d) for d in snapshot} == snapshot
    # A plain had cache of another config: --overwrite is advised (the CLI flag), and only then replaces it.
    cache = tmp_path / "cache"
    shutil.copytree(reference, cache)
    with pytest.raises(HadError, match="differs in: mask.*pass --overwrite to replace it"):
        cache_teacher.run(make_cfg(genome, teacher_dir, cache, **{"mask.ratio": 0.3}), dry_run=True)
    assert '"items"' in capsys.readouterr().out  # the plan is still printed
    cache_teacher.run(make_cfg(genome, teacher_dir, cache, **{"mask.ratio": 0.3, "cache.overwrite": True}))
    assert CacheReader(str(cache)).manifest["mask"]["ratio"] == 0.3
    afile = tmp_path / "afile"
    afile.write_text("keep")
    for out, message in [(afile, "is a file"), ("/proc/nope/cache", "/proc/nope/cache: cannot create")]:
        with pytest.raises(HadError, match=message):
            cache_teacher.run(make_cfg(genome, teacher_dir, out))
    assert afile.read_text() == "keep"


def test_unreachable_scheduler_is_a_one_line_error(genome, teacher_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("had.cluster.SCHEDULER_TIMEOUT_S", 1)
    for address in ("tcp://127.0.0.1:1", "nonsense"):
        with pytest.raises(HadError, match=f"--scheduler {address}: cannot connect"):
            cache_teacher.run(make_cfg(genome, teacher_dir, tmp_path / "cache", **{"cache.scheduler": address}))


def test_fsspec_url_cache_equals_local_cache(genome, teacher_dir, reference):
    url = "memory://had-test-cache"
    cache_teacher.run(make_cfg(genome, teacher_dir, url))
    got, ref = CacheReader(url), CacheReader(str(reference))
    assert cache_teacher.info(url)["ok"]
    assert [s["objects"] for s in got.manifest["shards"]] == [s["objects"] for s in ref.manifest["shards"]]
    for i in range(0, len(ref), 7):
        assert all(np.array_equal(getattr(got[i], k), v) for k, v in vars(ref[i]).items())


def test_bad_inputs_fail_clearly_and_touch_nothing(genome, teacher_dir, tmp_path):
    out = tmp_path / "cache"
    cache_teacher.run(make_cfg(genome, teacher_dir, out, **{"cache.shard_windows": 50}))
    before = _files(out)
    empty, garbled = tmp_path / "empty.fa", tmp_path / "garbled.fa"
    empty.write_text("")
    garbled.write_text(">chr1\nACGT\x00\x01##12\n")
    cases = {
        "empty FASTA": ({"genome.fasta": str(empty)}, str(empty)),
        "garbled FASTA": ({"genome.fasta": str(garbled)}, str(garbled)),
        "no such layer": ({"teacher.layer": 3}, "teacher.layer=3"),
        "window too long": ({"genome.window": 13000}, "genome.window=13000"),
    }
    for name, (override, message) in cases.items():
        with pytest.raises(HadError, match=message):
            cache_teacher.run(make_cfg(genome, teacher_dir, out, **override))
        with pytest.raises(HadError):
            cache_teacher.run(make_cfg(genome, teacher_dir, tmp_path / f"new-{len(name)}", **override))
        assert not (tmp_path / f"new-{len(name)}").exists(), name
    assert _files(out) == before


def test_full_disk_keeps_committed_shards_and_resume_completes(genome, teacher_dir, reference, tmp_path, monkeypatch):
    out = tmp_path / "cache"
    real_put, calls = Storage.put, []

    def failing_put(self, key, data):
        if key.startswith("features/") and len(calls) >= 2:
            raise OSError(28, "No space left on device")
        calls.append(key) if key.startswith("features/") else None
        return real_put(self, key, data)

    monkeypatch.setattr(Storage, "put", failing_put)
    with pytest.raises(HadError, match="No space left"):
        cache_teacher.run(make_cfg(genome, teacher_dir, out))
    monkeypatch.setattr(Storage, "put", real_put)
    assert not (out / "manifest.json").exists()
    assert sorted(os.listdir(out / "_commit")) == ["shard-000000.json", "shard-000001.json"]
    n_shards = len(CacheReader(str(reference)).manifest["shards"])
    with pytest.raises(HadError, match=f"incomplete cache: 2 of {n_shards} shards committed; re-run"):
        cache_teacher.info(str(out))
    cache_teacher.run(make_cfg(genome, teacher_dir, out))
    assert _files(out) == _files(reference)


def test_interrupt_says_how_far_the_run_got(genome, teacher_dir, reference, tmp_path, monkeypatch, capsys):
    real_put, written = Storage.put, []

    def interrupted_put(self, key, data):
        if key.startswith("_commit/") and len(written) == 3:
            raise KeyboardInterrupt  # Ctrl-C while the fourth shard commits
        written.append(key) if key.startswith("_commit/") else None
        return real_put(self, key, data)

    monkeypatch.setattr(Storage, "put", interrupted_put)
    with pytest.raises(KeyboardInterrupt):
        cache_teacher.run(make_cfg(genome, teacher_dir, tmp_path / "cache"))
    n_shards = len(CacheReader(str(reference)).manifest["shards"])
    assert f"interrupted: 3 of {n_shards} shards committed" in capsys.readouterr().err


def test_progress_into_a_log_file_is_not_one_line_per_shard(genome, teacher_dir, tmp_path, capsys):
    """stderr not a terminal (capsys): a fast run of many shards draws the bar at start and end only."""
    cache_teacher.run(make_cfg(genome, teacher_dir, tmp_path / "cache", **{"cache.shard_windows": 2}))
    shards = len(list((tmp_path / "cache" / "_commit").iterdir()))
    draws = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if "cache-teacher:" in line]
    assert shards >= 20 and 1 <= len(draws) <= 3, draws


def test_dry_run_plans_without_writing(genome, teacher_dir, reference, tmp_path, capsys):
    out = tmp_path / "cache"
    plan = cache_teacher.run(make_cfg(genome, teacher_dir, out), dry_run=True)
    assert not out.exists()
    manifest = CacheReader(str(reference)).manifest
    assert plan["items"] == manifest["n_items"] and plan["token_counts"] == "exact"
    assert plan["teacher_tokens"] == manifest["totals"]["n_tokens"] + manifest["n_items"]  # + CLS
    assert plan["visible_tokens"] == manifest["totals"]["n_visible"]
    cache_teacher.info(str(reference), verify=False)  # counts tokens the way the dry run does
    assert f"tokens: {plan['teacher_tokens']} teacher (specials included), {plan['visible_tokens']} visible" \
        in capsys.readouterr().out
    assert plan["raw_feature_bytes"]["fp16"] == plan["visible_tokens"] * 32 * 2
    assert plan["measured_tokens_per_s"] > 0 and plan["estimated_device_hours"] >= 0
    tails = sum(len(seq) % WINDOW for seq in genome[1].values())  # stride = window: each contig's tail
    assert (plan["short_intervals_skipped"], plan["nt_not_covered"]) == (0, tails)
    # A BED whose rows are all shorter than the window: the error names the BED and counts its rows.
    bed = tmp_path / "short.bed"
    bed.write_text(f"chrA\t0\t{WINDOW - 1}\nchrB\t10\t{WINDOW + 5}\n")
    with pytest.raises(HadError, match=rf"{bed}: no window of {WINDOW} nt .*2 of 2 rows of {bed} shorter"):
        cache_teacher.run(make_cfg(genome, teacher_dir, out, **{"genome.bed": str(bed)}), dry_run=True)


def test_cache_info_verifies_every_shard(reference, tmp_path, capsys):
    report = cache_teacher.info(str(reference))
    assert report["ok"] and "verify: ok" in capsys.readouterr().out
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    victim = copy / "token_masked" / "c" / "2" / "0"
    victim.write_bytes(victim.read_bytes()[:-1] + b"\x00")
    with pytest.raises(HadError, match="failed verification"):
        cache_teacher.info(str(copy))
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    assert lines[-2:] == ["verify: 1 BAD", "shard 2 token_masked: size or crc32c mismatch"]


RUNNER = """
import sys
from had.config import load_config
from had.pipeline import cache_teacher
cache_teacher.run(load_config(None, __import__("json").loads(sys.argv[1])))
"""


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_gives_the_same_cache(genome, teacher_dir, tmp_path):
    overrides = {"cache.shard_windows": 2}
    reference = tmp_path / "reference"
    cache_teacher.run(make_cfg(genome, teacher_dir, reference, **overrides))
    out = tmp_path / "cache"
    cfg = make_cfg(genome, teacher_dir, out, **overrides)
    n_shards = len(list((reference / "_commit").iterdir()))
    args = json.dumps({f"{s}.{k}": v for s, sec in cfg.to_dict().items() if s != "student"
                       for k, v in sec.items()})
    rng = np.random.default_rng(0)
    # The killed runs come from another shell than the reference (which runs under this process's one
    # thread): cache-teacher pins the teacher's threads itself (teacher.cpu_threads), so bits still match.
    env = os.environ | {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, "-c", RUNNER, args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env)
        done_before = len(os.listdir(out / "_commit")) if (out / "_commit").exists() else 0
        # a kill point at or after what earlier attempts committed, and before the last two shards
        target = int(rng.integers(done_before, max(done_before, n_shards - 2) + 1)) if attempt else 0
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            commits = len(os.listdir(out / "_commit")) if (out / "_commit").exists() else -1
            if commits >= target and (attempt or (out / "zarr.json").exists()):
                break
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not (out / "manifest.json").exists(), f"manifest before completion (kill {attempt})"
    cache_teacher.run(cfg)
    assert _files(out) == _files(reference)


def test_a_resume_under_other_numerics_is_stated_and_agrees_within_tolerance(genome, teacher_dir, reference,
                                                                           tmp_path, monkeypatch, capsys):
    """Contract (FORMAT.md, "Determinism"): shards computed under other numerics (here: CPU threads) are
    recorded as such, the summary and cache-info say the cache is mixed, and features agree with an
    uninterrupted run within the documented tolerance."""
    out = tmp_path / "cache"
    written, write = [], featurize.write

    def interrupted(*args):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(args[1].shard)
        return write(*args)

    monkeypatch.setattr(featurize, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache_teacher.run(make_cfg(genome, teacher_dir, out))
    monkeypatch.setattr(featurize, "write", write)
    capsys.readouterr()
    cache_teacher.run(make_cfg(genome, teacher_dir, out, **{"teacher.cpu_threads": 2}))
    manifest = CacheReader(str(out)).manifest
    threads = [(g["numerics"]["cpu_threads"], g["n_shards"]) for g in manifest["numerics"]]
    n_shards = len(manifest["shards"])
    assert threads == [(1, 2), (2, n_shards - 2)]
    assert "numerics: mixed" in capsys.readouterr().out
    cache_teacher.info(str(out))
    assert "numerics: mixed" in capsys.readouterr().out
    got, ref = CacheReader(str(out)), CacheReader(str(reference))
    for i in range(len(ref)):
        a, b = got[i], ref[i]
        for key in ("nucleotides", "nt_mask", "spans", "token_masked"):
            assert np.array_equal(getattr(a, key), getattr(b, key))
        np.testing.assert_allclose(a.features, b.features, rtol=2**-9, atol=1e-4)  # FORMAT.md's bound
    assert "all 5 shards" in _info_numerics(reference, capsys)


def _info_numerics(path, capsys) -> str:
    capsys.readouterr()
    cache_teacher.info(str(path))
    return next(line for line in capsys.readouterr().out.splitlines() if "numerics:" in line)


@pytest.mark.slow
def test_two_worker_cluster_with_a_killed_worker_equals_one_worker(genome, teacher_dir, reference, tmp_path):
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "cache"
    killed = []

    def kill_one_worker():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            commits = len(os.listdir(out / "_commit")) if (out / "_commit").exists() else 0
            workers = []
            for p in psutil.Process().children(recursive=True):
                try:  # a child can exit between the listing and the read (it used to end this thread)
                    if "spawn_main" in " ".join(p.cmdline()):
                        workers.append(p)
                except psutil.Error:
                    pass
            if commits >= 1 and workers:
                workers[0].kill()
                killed.append(workers[0].pid)
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    cache_teacher.run(make_cfg(genome, teacher_dir, out, **{"cache.workers": 2}))
    killer.join()
    assert killed, "no worker was killed"
    # Same settings and numerics (teacher.cpu_threads pins the workers' threads as the driver's), so the
    # same bits however the shards were spread over workers and retried (FORMAT.md, "Determinism").
    assert _files(out) == _files(reference)


@pytest.mark.slow
def test_gpu_slots_overlap_preparing_with_a_forward_that_never_runs_twice(genome, teacher_dir, reference, tmp_path,
                                                                         monkeypatch):
    """An existing cluster whose worker has two threads and two GPU slots (the documented GPU set-up):
    forwards take turns, another shard is prepared meanwhile, and the cache equals a one-task-at-a-time run."""
    from distributed import LocalCluster

    events, lock = [], threading.Lock()

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            with lock:
                events.append((name, t0, time.perf_counter()))
            return out
        return wrapper

    monkeypatch.setattr(featurize, "compute_features", timed("forward", featurize.compute_features))
    monkeypatch.setattr(featurize, "prepare_items", timed("prepare", featurize.prepare_items))
    out = tmp_path / "cache"
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, resources={"GPU": 2},
                      dashboard_address=":0") as cluster:
        cache_teacher.run(make_cfg(genome, teacher_dir, out, **{"cache.scheduler": cluster.scheduler_address}))
    forwards = sorted((a, b) for name, a, b in events if name == "forward")
    prepares = [(a, b) for name, a, b in events if name == "prepare"]
    assert len(forwards) == len(prepares) == len(list((out / "_commit").iterdir()))
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(forwards, forwards[1:])), "two forwards at once"
    assert any(a < fb and fa < b for a, b in prepares for fa, fb in forwards), "no preparing during a forward"
    assert _files(out) == _files(reference)


def test_scheduler_jobs_carry_absolute_paths(genome, teacher_dir, reference, tmp_path, monkeypatch):
    """Workers of an existing cluster run in their own directory: relative --fasta, --teacher and --out
    reach them absolute (what a worker started elsewhere needs), and the cache is the same."""
    from distributed import LocalCluster

    seen = []

    def recording(job, teacher):
        seen.append((job.url, job.fasta, job.teacher.model))
        return prepare_items(job, teacher)

    prepare_items = featurize.prepare_items
    monkeypatch.setattr(featurize, "prepare_items", recording)
    monkeypatch.chdir(tmp_path)
    relative = (Path(os.path.relpath(genome[0])), genome[1])
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        cache_teacher.run(make_cfg(relative, os.path.relpath(teacher_dir), "cache",
                                   **{"cache.scheduler": cluster.scheduler_address}))
    assert seen and set(seen) == {(str(tmp_path / "cache"), str(genome[0]), str(teacher_dir))}
    arrays = [{k: v for k, v in _files(root).items() if "/" in k} for root in (tmp_path / "cache", reference)]
    assert arrays[0] == arrays[1]  # the root's attributes name the teacher as given (relative here)
    job = featurize.ShardJob(
        url="memory://c", layout=None, teacher=TeacherConfig(model="InstaDeepAI/nt-v2"), mask=MaskConfig(),
        fasta="g.fa", contigs=(), window_id=None, contig=None, start=None, first_window=0, shard=0).for_workers()
    assert (job.url, job.teacher.model) == ("memory://c", "InstaDeepAI/nt-v2")  # URLs and hub ids as given
