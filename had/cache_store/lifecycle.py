"""May a cache be written at this location? New, resume, replace, or refuse; then create it.

    action = store_action(storage, identity, overwrite)        # "new" | "resume" | "replace", or HadError
    prepare_store(storage, layout, identity, overwrite, files)  # ready for write_shard

``identity`` is everything that decides the stored values (the root's ``had`` attribute, FORMAT.md
"Recognising a cache"): a store with the same identity is resumed, one with another is replaced
only with ``overwrite``. Only a had cache is ever deleted: its root zarr.json carries had's
attributes and it holds nothing but the cache's own files. Errors name the location as --out.
"""
from __future__ import annotations

import os

from had.cache_store.layout import Layout
from had.cache_store.storage import Storage
from had.cache_store.writer import cache_attributes, create_store, foreign_names, remove_cache
from had.errors import HadError


def store_action(storage: Storage, identity: dict, overwrite: bool) -> str:
    """What writing ``identity`` at the store will do: "new" (absent or empty), "resume" (a cache of this
    same identity), "replace" (a had cache to delete first); HadError when it must not be touched."""
    path = storage.url
    if storage.local and os.path.exists(storage.root) and not os.path.isdir(storage.root):
        raise HadError(f"--out {path} is a file, not a directory: choose a new or empty directory")
    if not storage.list(""):
        return "new"
    attributes = cache_attributes(storage)
    if not {"had", "had_creating"} & set(attributes):
        raise HadError(f"--out {path} exists and is not a had cache (no zarr.json written by had): "
                       "had never deletes it; choose a new or empty directory")
    if "had" in attributes:
        existing = attributes["had"]
        diff = sorted(k for k in set(existing) | set(identity) if existing.get(k) != identity.get(k))
        if not diff:
            return "resume"
        foreign = foreign_names(storage)
        if foreign:
            raise HadError(f"--out {path} holds a cache written with a different config (differs in: {', '.join(diff)}) "
                           f"and other files ({', '.join(foreign[:3])}): had will not delete it; choose another --out")
        if not overwrite:
            raise HadError(f"--out {path} holds a cache written with a different config (differs in: {', '.join(diff)}); "
                           "choose another --out, or pass --overwrite to replace it")
        return "replace"
    foreign = foreign_names(storage)  # had_creating: creation was interrupted, no shard written yet
    if foreign:
        raise HadError(f"--out {path} holds a half-created had cache and other files ({', '.join(foreign[:3])}): "
                       "had will not delete it; choose another --out")
    return "replace"


def prepare_store(storage: Storage, layout: Layout, identity: dict, overwrite: bool,
                  files: dict[str, bytes] | None = None) -> None:
    """Create the store (with ``files`` beside the arrays), or check that an existing one was started with
    the same identity and clear its partial writes."""
    action = store_action(storage, identity, overwrite)
    if action == "resume":
        storage.remove_partials()
        return
    if action == "replace":
        remove_cache(storage)
    if storage.local:
        try:
            os.makedirs(storage.root, exist_ok=True)
        except OSError as e:
            raise HadError(f"--out {storage.url}: cannot create the directory ({e.strerror})") from None
    create_store(storage, layout, identity, files=files)
