"""``manifest.json``: written last, its presence means the cache is complete.

It holds the cache's identity (teacher, tokenizer family and files hash, layer, dtype, masking, windows,
genome: everything that decides the stored values), the layout, one entry per
shard copied from the shard's commit record (counts, object sizes, crc32c, numerics),
and the distinct numerics the shards were computed under (FORMAT.md, "Determinism").
"""
from __future__ import annotations

import json
import time

import google_crc32c

from had.cache_store.layout import FORMAT_VERSION, READABLE_VERSIONS, ArraySpec, Layout
from had.cache_store.storage import Storage
from had.cache_store.writer import cache_attributes, read_commit
from had.errors import HadError

MANIFEST = "manifest.json"


def build(identity: dict, layout: Layout, records: list[dict]) -> dict:
    """Manifest dict from the identity, the layout and every shard's commit record (in shard order)."""
    return {
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **identity,
        "layout": layout.to_dict(),
        "shards": records,
        "numerics": numerics_groups(records),
        "totals": {
            key: sum(r[key] for r in records) for key in ("n_items", "n_tokens", "n_visible", "out_of_range")
        }
        | {"nbytes": sum(o["nbytes"] for r in records for o in r["objects"].values())},
    }


def numerics_groups(records: list[dict]) -> list[dict]:
    """The distinct `numerics` of the commit records, in order of first use, each with its shard count."""
    groups: list[dict] = []
    for record in records:
        numerics = record.get("numerics")
        for group in groups:
            if group["numerics"] == numerics:
                group["n_shards"] += 1
                break
        else:
            groups.append({"numerics": numerics, "n_shards": 1})
    return groups


def describe_numerics(manifest: dict) -> str:
    """One line for summaries: the shards' numerics, and whether they are bit-for-bit comparable."""
    def one(n: dict | None) -> str:
        if n is None:
            return "not recorded"
        threads = f", {n['cpu_threads']} CPU thread(s)" if n.get("cpu_threads") else ""
        return f"torch {n['torch']}, {n['device']}, {n['dtype']}{threads}, batches of {n['batch_tokens']} tokens"

    groups = manifest.get("numerics") or numerics_groups(manifest["shards"])
    if len(groups) == 1:
        return f"{one(groups[0]['numerics'])} (all {groups[0]['n_shards']} shards)"
    parts = "; ".join(f"{g['n_shards']} shard(s): {one(g['numerics'])}" for g in groups)
    return f"mixed, so features agree within FORMAT.md's tolerance, not bit for bit: {parts}"


def write(storage: Storage, manifest: dict) -> None:
    storage.put(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())


def load(storage: Storage) -> tuple[dict, Layout]:
    """Read and check the manifest against itself and the commit records; HadError when unusable."""
    where = f"{storage.url}/{MANIFEST}"
    if not storage.exists(MANIFEST):
        attributes = cache_attributes(storage)
        if "had" in attributes:
            n_shards = Layout(**attributes["had"]["layout"]).n_shards
            done = sum(read_commit(storage, s) is not None for s in range(n_shards))
            raise HadError(f"{storage.url}: incomplete cache: {done} of {n_shards} shards committed; "
                           "re-run `had cache-teacher` with the same options to finish it")
        if "had_creating" in attributes:
            raise HadError(f"{storage.url}: incomplete cache (interrupted while creating its arrays); "
                           "re-run `had cache-teacher` with the same options")
        raise HadError(f"{where} not found: {storage.url} is not a had cache")
    try:
        manifest = json.loads(storage.get(MANIFEST))
        layout = Layout(**manifest["layout"])
        shards = manifest["shards"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise HadError(f"{where}: unreadable manifest ({e})") from None
    if manifest.get("format_version") not in READABLE_VERSIONS:
        raise HadError(f"{where}: format version {manifest.get('format_version')}, this had reads "
                       f"{', '.join(map(str, READABLE_VERSIONS))}")
    expected = [[r.start, r.stop] for r in map(layout.shard_range, range(layout.n_shards))]
    if [s["items"] for s in shards] != expected or manifest.get("n_items") != layout.n_items:
        raise HadError(f"{where}: shard list does not cover items 0..{layout.n_items} in order")
    check_metadata(storage, manifest, layout)
    committed = set(storage.list("_commit"))
    missing = [s["shard"] for s in shards if f"shard-{s['shard']:06d}.json" not in committed]
    if missing:
        raise HadError(f"{storage.url}: {len(missing)} shard(s) listed in the manifest are not committed "
                       f"(first: {missing[:5]}); the cache is damaged, re-run `had cache-teacher`")
    return manifest, layout


def check_metadata(storage: Storage, manifest: dict, layout: Layout) -> None:
    """Check the Zarr metadata documents against the manifest: the root zarr.json's identity, and every
    array's zarr.json (shape, dtype, shard and chunk shapes, codecs, fill value, key encoding), so that a
    store zarr-python could not open (a truncated zarr.json, say) is an error naming the file, not a cache
    that seems fine."""
    root = _metadata(storage, "zarr.json")
    identity = (root.get("attributes") or {}).get("had")
    if root.get("node_type") != "group" or not isinstance(identity, dict):
        raise HadError(f"{storage.url}/zarr.json: not a had cache's group metadata (no attributes.had)")
    changed = sorted(k for k, v in identity.items() if manifest.get(k) != v)
    if changed:
        raise HadError(f"{storage.url}/zarr.json: identity differs from {MANIFEST} in {', '.join(changed)}; "
                       "the cache is damaged")
    for spec in layout.arrays().values():
        key = f"{spec.name}/zarr.json"
        found = _array_fields(_metadata(storage, key))
        expected = _expected_fields(spec, checksummed=manifest["format_version"] >= 2)
        if found != expected:
            wrong = sorted(k for k in expected if found.get(k) != expected[k])
            raise HadError(f"{storage.url}/{key}: array metadata differs from the cache layout in "
                           f"{', '.join(wrong)}; the cache is damaged")


def _metadata(storage: Storage, key: str) -> dict:
    where = f"{storage.url}/{key}"
    try:
        doc = json.loads(storage.get(key))
    except FileNotFoundError:
        raise HadError(f"{where}: missing; the cache is damaged") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HadError(f"{where}: unreadable Zarr metadata ({e}); the cache is damaged") from None
    if not isinstance(doc, dict) or doc.get("zarr_format") != 3:
        raise HadError(f"{where}: not Zarr v3 metadata; the cache is damaged")
    return doc


def _array_fields(doc: dict) -> dict:
    """The fields of an array's zarr.json that decide how its bytes are read."""
    try:
        sharding = doc["codecs"][0]
        return {
            "node_type": doc.get("node_type"),
            "shape": doc["shape"],
            "data_type": doc["data_type"],
            "shard_shape": doc["chunk_grid"]["configuration"]["chunk_shape"],
            "chunk_shape": sharding["configuration"]["chunk_shape"],
            "codecs": [c["name"] for c in sharding["configuration"]["codecs"]],
            "fill_value": json.dumps(doc["fill_value"]),
            "chunk_key_encoding": doc["chunk_key_encoding"],
        }
    except (KeyError, IndexError, TypeError):
        return {"node_type": doc.get("node_type")}


def _expected_fields(spec: ArraySpec, checksummed: bool) -> dict:
    """What `create_arrays` writes for this array, in `_array_fields`' terms (format 1: no chunk crc32c)."""
    fill = "NaN" if isinstance(spec.fill_value, float) and spec.fill_value != spec.fill_value else spec.fill_value
    return {
        "node_type": "array", "shape": list(spec.shape), "data_type": spec.dtype,
        "shard_shape": list(spec.shard_shape), "chunk_shape": list(spec.chunk_shape),
        "codecs": ["bytes", "zstd"] + (["crc32c"] if checksummed else []),
        "fill_value": json.dumps(fill),
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
    }


def verify(path: str) -> dict:
    """Re-read every shard object and check its size and crc32c against the manifest and commit records.

    Returns {"ok", "n_shards", "n_items", "nbytes", "bad": [(shard, array, reason), ...]}.
    """
    storage = Storage(path)
    manifest, layout = load(storage)
    bad = []
    for entry in manifest["shards"]:
        record = read_commit(storage, entry["shard"])
        if record != entry:
            bad.append((entry["shard"], "-", "commit record differs from the manifest"))
        for name, obj in entry["objects"].items():
            try:
                data = storage.get(obj["key"])
            except (OSError, FileNotFoundError) as e:
                bad.append((entry["shard"], name, f"unreadable: {e}"))
                continue
            if len(data) != obj["nbytes"] or google_crc32c.value(data) != obj["crc32c"]:
                bad.append((entry["shard"], name, "size or crc32c mismatch"))
    return {
        "ok": not bad,
        "n_shards": layout.n_shards,
        "n_items": layout.n_items,
        "nbytes": manifest["totals"]["nbytes"],
        "bad": bad,
    }
