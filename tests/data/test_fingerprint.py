"""fingerprint, the one streamed sha256 of files (genomes, BED files, teacher weights, tokenizer files)."""
import hashlib

from had.data import fingerprint as fp


def test_streamed_names_and_bytes_in_name_order(tmp_path, monkeypatch):
    monkeypatch.setattr(fp, "BLOCK", 7)  # many blocks per file
    files = {"b.bin": bytes(range(256)) * 3, "a.safetensors": b"weights" * 50, "c": b""}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    want = hashlib.sha256(b"".join(name.encode() + files[name] for name in sorted(files))).hexdigest()
    assert fp.fingerprint([tmp_path / n for n in ("c", "b.bin", "a.safetensors")]) == want
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for name, data in files.items():
        (moved / name).write_bytes(data)
    assert fp.fingerprint(moved.iterdir()) == want  # any folder, any listing order, str or Path
    assert fp.fingerprint([str(tmp_path / "b.bin")], names=False) == hashlib.sha256(files["b.bin"]).hexdigest()
