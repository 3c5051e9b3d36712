"""Pick a teacher's tokenizer family from its own files (or the teacher.tokenizer option) and load it.

Detection, in order:
- ``tokenizer.json`` (a HF fast tokenizer): ``char`` when every non-special token is one
  character, ``bpe`` for a BPE model (DNABERT-2); anything else is refused;
- ``vocab.txt`` without it: ``kmer`` (NTv2's EsmTokenizer files);
- neither: refused, in one line, before any model is loaded.

    tok = load_tokenizer("../shared/reference/dnabert2")            # family "bpe"
    tok = load_tokenizer("teacher-dir", family="char")              # teacher.tokenizer=char
"""
from __future__ import annotations

from pathlib import Path

from had.data.fingerprint import fingerprint
from had.data.tokenizer import NTv2Tokenizer
from had.data.tokenizer_base import FAMILIES, TeacherTokenizer
from had.data.tokenizer_hf import hf_family, load_hf
from had.errors import HadError

# Files that decide how a DNA string becomes ids: all of them present are hashed into vocab_hash
# (bpe / char; a k-mer vocab_hash stays the sha256 of vocab.txt, as in caches written before).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def detect_family(folder: str | Path) -> str:
    """kmer | bpe | char for the tokenizer files in `folder`; HadError when none is supported."""
    folder = Path(folder)
    if (folder / "tokenizer.json").is_file():
        family = hf_family(folder)
        if family is None:
            raise HadError(f"{folder}/tokenizer.json: unsupported tokenizer (not BPE and not one token per "
                           f"nucleotide); had distils k-mer (NTv2), BPE (DNABERT-2) and single-nucleotide teachers")
        return family
    if (folder / "vocab.txt").is_file():
        return "kmer"
    raise HadError(f"{folder}: no tokenizer files (tokenizer.json or vocab.txt); a teacher needs its own tokenizer")


def load_tokenizer(folder: str | Path, family: str = "auto") -> TeacherTokenizer:
    """The teacher tokenizer of `folder`; family auto (detect_family) or one of FAMILIES."""
    folder = Path(folder)
    if family not in ("auto", *FAMILIES):
        raise HadError(f"teacher.tokenizer={family!r}: expected auto, {', '.join(FAMILIES)}")
    family = detect_family(folder) if family == "auto" else family
    if family == "kmer":
        return NTv2Tokenizer.from_dir(folder)
    if not (folder / "tokenizer.json").is_file():
        raise HadError(f"teacher.tokenizer={family}: {folder} has no tokenizer.json")

    files = [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()]
    return load_hf(folder, family, fingerprint(files))
