"""Byte-level access to a cache location: a local path or an fsspec URL.

Local paths (and ``file://`` URLs, mapped to paths) write to a temporary file and
``os.replace`` it over the key, so a killed writer leaves either the old object or
the new one, never a torn one. Object stores (s3://, gs://, memory://) get one PUT
per key, atomic per key. Range reads on local files use ``os.pread`` on descriptors
cached per process (reset after a fork, so a Storage is safe to inherit).
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import fsspec

PARTIAL = ".partial"


class Storage:
    def __init__(self, url: str):
        self.url = url
        path = url[len("file://"):] if url.startswith("file://") else url
        self.local = "://" not in path
        if self.local:
            self.root = str(Path(path).absolute())
            self.fs = None
        else:
            self.fs, self.root = fsspec.core.url_to_fs(url)
        self._pid = os.getpid()
        self._fds: dict[str, int] = {}

    @property
    def zarr_store(self) -> str:
        """What zarr should open: a plain path (LocalStore, atomic writes) or the URL."""
        return self.root if self.local else self.url

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if not self.local:
            self.fs.pipe_file(path, data)
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}{PARTIAL}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        self._forget(path)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        if self.local:
            with open(path, "rb") as f:
                return f.read()
        return self.fs.cat_file(path)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes from ``start``; a negative start counts from the end."""
        path = self._path(key)
        if not self.local:
            end = None if start < 0 and length == -start else start + length
            return self.fs.cat_file(path, start=start, end=end)
        fd = self._fd(path)
        if start < 0:
            start += os.fstat(fd).st_size
        data = os.pread(fd, length, start)
        if len(data) != length:
            raise OSError(f"{path}: short read ({len(data)} of {length} bytes at {start})")
        return data

    def exists(self, key: str) -> bool:
        path = self._path(key)
        return os.path.exists(path) if self.local else self.fs.exists(path)

    def list(self, prefix: str) -> list[str]:
        """Names (not paths) of the objects directly under prefix; [] when it does not exist."""
        path = self._path(prefix)
        if self.local:
            return sorted(os.listdir(path)) if os.path.isdir(path) else []
        if not self.fs.exists(path):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(path, detail=False))

    def delete(self, key: str) -> None:
        path = self._path(key)
        if self.local:
            if os.path.exists(path):
                os.remove(path)
                self._forget(path)
        elif self.fs.exists(path):
            self.fs.rm(path)

    def remove_tree(self, key: str) -> None:
        """Delete the object or folder ``key`` with everything under it."""
        path = self._path(key)
        if not self.local:
            self.fs.rm(path, recursive=True)
        elif os.path.isdir(path):
            import shutil

            shutil.rmtree(path)
        else:
            self.delete(key)

    def remove_partials(self) -> int:
        """Delete temporary files left by killed writers (local only); returns how many."""
        if not self.local:
            return 0
        count = 0
        for dirpath, _, files in os.walk(self.root):
            for name in files:
                if name.endswith(PARTIAL):
                    os.remove(os.path.join(dirpath, name))
                    count += 1
        return count

    def _fd(self, path: str) -> int:
        if self._pid != os.getpid():  # descriptors inherited through fork are shared: reopen
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = os.open(path, os.O_RDONLY)
        return fd

    def _forget(self, path: str) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None and self._pid == os.getpid():
            os.close(fd)

    def __getstate__(self):
        return {"url": self.url}

    def __setstate__(self, state):
        self.__init__(state["url"])

    def __del__(self):
        if getattr(self, "_pid", None) == os.getpid():
            for fd in self._fds.values():
                os.close(fd)
