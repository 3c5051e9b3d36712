"""Cache store: shard objects, commit records, manifest, direct reader, verify.

Independent references: zarr-python reading the same shard objects, numpy/torch dtype
casts, and the items as they were handed to the writer.
"""
import json
import os
import pickle
import uuid

import google_crc32c
import numpy as np
import pytest
import torch
import zarr

from had.cache_store import CacheItem, CacheReader, Layout, Storage, verify, write_shard
from had.cache_store.writer import create_store, write_cache
from had.errors import HadError


def _items(rng, n_items, length, dim, outliers=False):
    items = []
    for _ in range(n_items):
        n = int(rng.integers(length // 6, length))  # up to L tokens: spills into several feature chunks
        masked = rng.random(n) < 0.2
        feats = rng.normal(size=(int((~masked).sum()), dim)).astype(np.float32)
        if outliers:
            feats[:, :2] *= 40.0
        items.append(CacheItem(
            nucleotides=rng.integers(0, 5, length).astype(np.uint8),
            nt_mask=rng.random(length) < 0.15,
            spans=np.stack([np.arange(n), np.ones(n)], 1).astype(np.int32),
            token_masked=masked,
            features=feats,
        ))
    return items


def _write_cache(url, items, layout):
    storage = Storage(url)
    write_cache(storage, layout, {"n_items": layout.n_items}, items, overwrite=True)
    return storage


@pytest.fixture(params=["local", "file", "memory"])
def url(request, tmp_path):
    return {"local": str(tmp_path / "cache"), "file": f"file://{tmp_path}/cache",
            "memory": f"memory://{uuid.uuid4().hex}"}[request.param]


@pytest.mark.parametrize("dtype", ["fp16", "bf16", "int8"])
def test_round_trip_against_zarr_and_dtype_casts(url, dtype):
    rng = np.random.default_rng(0)
    layout = Layout(n_items=11, window=48, teacher_dim=16, feature_dtype=dtype, shard_items=4, token_chunk=8)
    items = _items(rng, 11, 48, 16)
    _write_cache(url, items, layout)
    reader = CacheReader(url)
    group = zarr.open_group(Storage(url).zarr_store, mode="r")
    assert len(reader) == 11
    for i, item in enumerate(items):
        got = reader[i]
        for key in ("nucleotides", "nt_mask", "spans", "token_masked"):
            want, have = getattr(item, key), getattr(got, key)
            assert have.dtype == want.dtype and np.array_equal(have, want), key
        n, n_vis = len(item.spans), len(item.features)
        assert got.features.shape == (n_vis, 16) and got.features.dtype == np.float32
        # zarr-python reads the same objects: shard format and padding as specified.
        assert np.array_equal(group["spans"][i, :n], item.spans)
        assert np.all(group["spans"][i, n:] == -1)
        assert np.array_equal(group["nucleotides"][i], item.nucleotides)
        stored = group["features"][i, :n_vis]
        if dtype == "fp16":
            assert np.array_equal(got.features, item.features.astype(np.float16).astype(np.float32))
            assert np.array_equal(stored, item.features.astype(np.float16))
            assert np.isnan(group["features"][i, n_vis:]).all()
        elif dtype == "bf16":
            ref = torch.from_numpy(item.features).to(torch.bfloat16)
            assert np.array_equal(got.features, ref.float().numpy())
            assert np.array_equal(stored.view(np.int16), ref.view(torch.int16).numpy())
        else:
            assert np.all(group["features"][i, n_vis:] == -128)
            cos = np.sum(got.features * item.features, 1) / (
                np.linalg.norm(got.features, axis=1) * np.linalg.norm(item.features, axis=1))
            assert cos.min() > 0.99
    with pytest.raises(IndexError):
        reader[11]
    assert np.array_equal(reader[-1].spans, items[-1].spans)


def test_int8_standardised_cosine_with_outlier_channels(tmp_path):
    rng = np.random.default_rng(1)
    layout = Layout(n_items=8, window=240, teacher_dim=64, feature_dtype="int8", shard_items=8)
    items = _items(rng, 8, 240, 64, outliers=True)
    _write_cache(str(tmp_path / "c"), items, layout)
    reader = CacheReader(str(tmp_path / "c"))
    ref = np.concatenate([it.features for it in items])
    got = np.concatenate([reader[i].features for i in range(8)])
    mu, sd = ref.mean(0), ref.std(0)
    a, b = (ref - mu) / sd, (got - mu) / sd
    std_cos = np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))
    assert std_cos > 0.999


def test_reader_refuses_missing_manifest_and_uncommitted_shards(tmp_path):
    rng = np.random.default_rng(2)
    layout = Layout(n_items=6, window=24, teacher_dim=4, shard_items=3)
    path = str(tmp_path / "c")
    storage = _write_cache(path, _items(rng, 6, 24, 4), layout)
    manifest = storage.get("manifest.json")
    storage.delete("manifest.json")
    with pytest.raises(HadError, match="incomplete cache: 2 of 2 shards committed"):
        CacheReader(path)
    storage.put("manifest.json", b"{not json")
    with pytest.raises(HadError, match="unreadable manifest"):
        CacheReader(path)
    storage.put("manifest.json", manifest)
    storage.delete("_commit/shard-000001.json")
    with pytest.raises(HadError, match="not committed"):
        CacheReader(path)
    broken = json.loads(manifest)
    broken["shards"] = broken["shards"][:1]
    storage.put("manifest.json", json.dumps(broken).encode())
    with pytest.raises(HadError, match="does not cover"):
        CacheReader(path)


def test_missing_shard_object_and_corruption_are_detected(tmp_path):
    rng = np.random.default_rng(3)
    layout = Layout(n_items=6, window=24, teacher_dim=4, shard_items=3)
    path = str(tmp_path / "c")
    _write_cache(path, _items(rng, 6, 24, 4), layout)
    assert verify(path)["ok"]
    feats = tmp_path / "c" / "features" / "c" / "1" / "0" / "0"
    data = bytearray(feats.read_bytes())
    data[3] ^= 0xFF
    feats.write_bytes(bytes(data))
    report = verify(path)
    assert not report["ok"] and report["bad"] == [(1, "features", "size or crc32c mismatch")]
    os.remove(feats)
    assert CacheReader(path)[0].features.shape[1] == 4  # shard 0 is intact
    with pytest.raises(HadError, match="damaged"):
        CacheReader(path)[4]


def test_local_writes_are_atomic_and_reader_survives_pickle_and_fork(tmp_path):
    rng = np.random.default_rng(4)
    layout = Layout(n_items=8, window=24, teacher_dim=4, shard_items=4)
    items = _items(rng, 8, 24, 4)
    path = str(tmp_path / "c")
    _write_cache(path, items, layout)
    assert not [f for _, _, fs in os.walk(path) for f in fs if f.endswith(".partial")]
    reader = CacheReader(path)
    reader[0]  # opens descriptors in the parent
    clone = pickle.loads(pickle.dumps(reader))
    assert np.array_equal(clone[5].features, reader[5].features)
    loader = torch.utils.data.DataLoader(reader, batch_size=None, num_workers=2,
                                         multiprocessing_context="fork")
    for i, item in enumerate(loader):
        assert np.array_equal(item.spans, items[i].spans)


def _chunk_location(shard_file, spec, k):
    """(offset, nbytes) of inner chunk k, from the shard's trailing index as FORMAT.md specifies it."""
    data = shard_file.read_bytes()
    n = int(np.prod(spec.chunks_per_shard))
    entries = np.frombuffer(data[-(16 * n + 4):-4], "<u8").reshape(-1, 2)
    return int(entries[k, 0]), int(entries[k, 1])


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_corrupt_chunks_and_index_raise_naming_cache_array_and_shard(tmp_path):
    rng = np.random.default_rng(5)
    layout = Layout(n_items=8, window=24, teacher_dim=4, shard_items=4)
    items = _items(rng, 8, 24, 4)
    root = tmp_path / "c"
    _write_cache(str(root), items, layout)
    # Flip one byte inside item 5's first features chunk and inside item 6's nucleotides chunk (shard 1).
    per_item = layout.feature_rows // layout.token_chunk
    specs = layout.arrays()
    for name, item, k in [("features", 5, 1 * per_item), ("nucleotides", 6, 2)]:
        shard_file = root / specs[name].shard_key(1)
        offset, nbytes = _chunk_location(shard_file, specs[name], k)
        _flip(shard_file, offset + nbytes // 2)
        with pytest.raises(HadError, match=rf"{root}: {name} shard 1 .*checksum mismatch"):
            CacheReader(str(root))[item]
    reader = CacheReader(str(root))
    for i in (0, 1, 2, 3, 4, 7):  # every other item, the damaged shard's included, still reads exactly
        got = reader[i]
        assert np.array_equal(got.nucleotides, items[i].nucleotides)
        assert np.array_equal(got.features, items[i].features.astype(np.float16).astype(np.float32))
    index_file = root / specs["spans"].shard_key(0)
    _flip(index_file, index_file.stat().st_size - 10)
    with pytest.raises(HadError, match=rf"{root}: spans shard 0 .*index checksum mismatch"):
        CacheReader(str(root))[0]


def _as_format_1(root, layout):
    """Rewrite a cache as format 1 wrote it: chunks without their trailing crc32c (nor that codec in the
    arrays' zarr.json), version 1 in the manifest and the root identity."""
    storage = Storage(str(root))
    manifest = json.loads(storage.get("manifest.json"))
    group = json.loads(storage.get("zarr.json"))
    group["attributes"]["had"]["format_version"] = 1
    storage.put("zarr.json", json.dumps(group).encode())
    for spec in layout.arrays().values():
        meta = json.loads(storage.get(f"{spec.name}/zarr.json"))
        inner = meta["codecs"][0]["configuration"]
        inner["codecs"] = [c for c in inner["codecs"] if c["name"] != "crc32c"]
        storage.put(f"{spec.name}/zarr.json", json.dumps(meta).encode())
        for shard in range(layout.n_shards):
            data = storage.get(spec.shard_key(shard))
            n = int(np.prod(spec.chunks_per_shard))
            index = np.frombuffer(data[-(16 * n + 4):-4], "<u8").reshape(-1, 2).copy()
            parts, offset = [], 0
            for entry in index:
                if entry[0] != np.uint64(2**64 - 1):
                    parts.append(data[int(entry[0]):int(entry[0] + entry[1]) - 4])
                    entry[:] = offset, entry[1] - 4
                    offset += int(entry[1])
            body = index.astype("<u8").tobytes()
            obj = b"".join(parts) + body + google_crc32c.value(body).to_bytes(4, "little")
            storage.put(spec.shard_key(shard), obj)
            record = manifest["shards"][shard]["objects"][spec.name]
            record.update(nbytes=len(obj), crc32c=google_crc32c.value(obj))
    manifest["format_version"] = 1
    for shard in manifest["shards"]:
        storage.put(f"_commit/shard-{shard['shard']:06d}.json", json.dumps(shard, sort_keys=True).encode())
    storage.put("manifest.json", json.dumps(manifest).encode())


def test_format_1_caches_still_read(tmp_path):
    rng = np.random.default_rng(6)
    layout = Layout(n_items=6, window=24, teacher_dim=4, feature_dtype="int8", shard_items=4)
    items = _items(rng, 6, 24, 4)
    root = tmp_path / "c"
    _write_cache(str(root), items, layout)
    current = CacheReader(str(root))
    expected = [current[i] for i in range(6)]
    _as_format_1(root, layout)
    old = CacheReader(str(root))
    assert old.manifest["format_version"] == 1 and verify(str(root))["ok"]
    for i in range(6):
        assert all(np.array_equal(getattr(old[i], k), v) for k, v in vars(expected[i]).items())


@pytest.mark.parametrize("damage", ["truncated", "shape", "codec", "missing", "root identity"])
def test_damaged_metadata_documents_are_errors_naming_the_file(tmp_path, damage):
    """A zarr.json other tools cannot use is as much damage as a flipped chunk byte: cache-info (verify)
    and every reader refuse it in one line naming the file, where zarr-python (the independent reader
    FORMAT.md promises) fails or would read other bytes."""
    rng = np.random.default_rng(7)
    layout = Layout(n_items=6, window=24, teacher_dim=4, shard_items=3)
    root = tmp_path / "c"
    _write_cache(str(root), _items(rng, 6, 24, 4), layout)
    target = root / ("zarr.json" if damage == "root identity" else "features/zarr.json")
    meta = json.loads(target.read_text())
    if damage == "truncated":
        target.write_bytes(target.read_bytes()[:100])
        with pytest.raises(Exception):
            zarr.open_group(str(root), mode="r")["features"]
    elif damage == "missing":
        target.unlink()
    elif damage == "shape":
        meta["shape"][0] = 5
        target.write_text(json.dumps(meta))
    elif damage == "codec":
        meta["codecs"][0]["configuration"]["codecs"].pop()  # drop crc32c: zarr would misread every chunk
        target.write_text(json.dumps(meta))
    else:
        meta["attributes"]["had"]["n_items"] = 7
        target.write_text(json.dumps(meta))
    name = "zarr.json" if damage == "root identity" else "features/zarr.json"
    for check in (lambda: verify(str(root)), lambda: CacheReader(str(root))):
        with pytest.raises(HadError, match=rf"^{root}/{name}: .*damaged"):
            check()


@pytest.mark.parametrize("bad, message", [
    (lambda items: items[:-1], "holds 4 items, got 3"),
    (lambda items: [CacheItem(it.nucleotides[:-1], it.nt_mask[:-1], it.spans, it.token_masked, it.features)
                    for it in items], "has 23 nucleotides, the cache's window is 24"),
    (lambda items: [CacheItem(it.nucleotides, it.nt_mask, it.spans[:-1], it.token_masked, it.features)
                    for it in items], "token mask values"),
    (lambda items: [CacheItem(it.nucleotides, it.nt_mask, it.spans, it.token_masked, it.features[1:])
                    for it in items], "features of shape"),
    (lambda items: [CacheItem(it.nucleotides, it.nt_mask, it.spans, it.token_masked, it.features[:, :3])
                    for it in items], "teacher_dim 4"),
    (lambda items: [CacheItem(it.nucleotides, it.nt_mask, it.spans, it.token_masked) for it in items],
     "features of shape None"),
])
def test_items_that_do_not_fit_the_layout_are_refused_before_any_write(tmp_path, bad, message):
    layout = Layout(n_items=8, window=24, teacher_dim=4, shard_items=4)
    storage = Storage(str(tmp_path / "c"))
    create_store(storage, layout, {"n_items": 8})
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(HadError, match=f"{tmp_path / 'c'}: shard 1.*{message}"):
        write_shard(storage, layout, 1, bad(_items(np.random.default_rng(0), 4, 24, 4)))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_store_lifecycle_decides_from_the_identity_alone(tmp_path):
    """New, resume, refuse or replace, from the identity recorded in the store (no run config)."""
    from had.cache_store.lifecycle import prepare_store, store_action

    layout = Layout(n_items=4, window=24, teacher_dim=4, shard_items=4)
    storage = Storage(str(tmp_path / "c"))
    assert store_action(storage, {"n_items": 4, "teacher": "a"}, overwrite=False) == "new"
    prepare_store(storage, layout, {"n_items": 4, "teacher": "a"}, overwrite=False, files={"config.yaml": b"x: 1\n"})
    assert (tmp_path / "c" / "config.yaml").read_bytes() == b"x: 1\n"
    identity = {"n_items": 4, "teacher": "a", "layout": layout.to_dict()}  # as create_store records it
    assert store_action(storage, identity, overwrite=False) == "resume"
    other = identity | {"teacher": "b"}
    with pytest.raises(HadError, match=f"--out {tmp_path / 'c'} .*differs in: teacher.*pass --overwrite"):
        store_action(storage, other, overwrite=False)
    assert store_action(storage, other, overwrite=True) == "replace"
    prepare_store(storage, layout, other, overwrite=True)
    assert store_action(storage, other, overwrite=False) == "resume" and not (tmp_path / "c" / "config.yaml").exists()
