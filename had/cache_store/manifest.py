"""``manifest.json``: written last, its presence means the cache is complete.

It holds the cache's identity (teacher, tokenizer, layer, dtype, masking, windows,
genome: everything that decides the stored values), the layout, and one entry per
shard copied from the shard's commit record (counts, object sizes and crc32c).
"""
from __future__ import annotations

import json
import time

import google_crc32c

from had.cache_store.layout import FORMAT_VERSION, READABLE_VERSIONS, Layout
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
        "totals": {
            key: sum(r[key] for r in records) for key in ("n_items", "n_tokens", "n_visible", "out_of_range")
        }
        | {"nbytes": sum(o["nbytes"] for r in records for o in r["objects"].values())},
    }


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
    committed = set(storage.list("_commit"))
    missing = [s["shard"] for s in shards if f"shard-{s['shard']:06d}.json" not in committed]
    if missing:
        raise HadError(f"{storage.url}: {len(missing)} shard(s) listed in the manifest are not committed "
                       f"(first: {missing[:5]}); the cache is damaged, re-run `had cache-teacher`")
    return manifest, layout


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
