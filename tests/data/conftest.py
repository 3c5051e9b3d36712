"""Fixtures for the data tests: paths into ../shared that skip cleanly when it is absent."""
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} absent (the shared reference data is not mounted)")
    return path


@pytest.fixture
def ntv2_dir() -> Path:
    """The real NTv2-500M tokenizer and config files."""
    return _require(SHARED / "reference" / "ntv2" / "v2-500m-multi-species")


@pytest.fixture
def chr20() -> Path:
    """1 Mb of real human chr20 (GRCh37), header '>z', with its .fai."""
    return _require(SHARED / "data" / "real" / "genome" / "chr20_1mb_grch37.fa")


@pytest.fixture
def dnabert2_dir() -> Path:
    """The real DNABERT-2 tokenizer files (tokenizer.json, tokenizer_config.json)."""
    return _require(SHARED / "reference" / "dnabert2")
