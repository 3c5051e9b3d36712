"""File fingerprints: sha256 streamed over files' bytes, whatever their size (genomes, teacher weights).

    fingerprint([Path("hg38.fa")], names=False)   # == sha256 of the file's bytes
    fingerprint(folder.glob("*.safetensors"))      # names and bytes, in name order
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

BLOCK = 1 << 24  # bytes read at a time


def fingerprint(paths: Iterable[str | Path], names: bool = True) -> str:
    """sha256 hex digest over the files in name order, each file's name before its bytes when ``names``:
    the same files give the same fingerprint wherever their folder is."""
    h = hashlib.sha256()
    for path in sorted(map(Path, paths), key=lambda p: p.name):
        if names:
            h.update(path.name.encode())
        with path.open("rb") as f:
            while block := f.read(BLOCK):
                h.update(block)
    return h.hexdigest()
