"""The tiny preset end to end through the CLI (Typer's CliRunner): cache-teacher → train → eval."""
import json

import pytest
from typer.testing import CliRunner

from had.cli import app
from had.data import synthetic
from had.teacher import build_tiny_teacher

runner = CliRunner()


def _ok(argv):
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, f"had {' '.join(argv)} failed:\n{result.output}\n{result.exception!r}"
    return result.output


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    synthetic.write_genome(root / "genome.fa", seed=3, n_contigs=2, contig_length=6_000)
    synthetic.write_tasks(root / "nt", "nt", seed=3, n_train=48, n_test=24, length=120, tasks=["promoter_tata"])
    build_tiny_teacher(root / "teacher", hidden_size=16, num_layers=1, num_heads=2, seed=3)
    return root


@pytest.mark.slow
def test_tiny_preset_end_to_end(inputs):
    root = inputs
    cache, run, ev = root / "cache", root / "run", root / "eval"
    _ok(["cache-teacher", "--config", "tiny", "--fasta", str(root / "genome.fa"),
         "--teacher", str(root / "teacher"), "--out", str(cache), "--shard-windows", "16"])
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["teacher_dim"] == 16

    info = _ok(["cache-info", str(cache)])
    assert "ok" in info.lower()

    _ok(["train", "--config", "tiny", "--cache", str(cache), "--out", str(run), "--steps", "4",
         "--checkpoint-every", "2", "--log-every", "1"])
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [line["step"] for line in lines if "step" in line]
    assert steps and max(steps) == 4
    assert (run / "model" / "config.json").is_file() and (run / "config.yaml").is_file()

    table = _ok(["eval", "--config", "tiny", "--model", str(run / "model"), "--data-root", str(root / "nt"),
                 "--benchmark", "nt", "--seeds", "1", "--epochs", "1", "--out", str(ev)])
    assert "promoter_tata" in table
    assert (ev / "results.parquet").is_file() and (ev / "summary.md").is_file()


def test_missing_fasta_is_a_clear_error(inputs, tmp_path):
    result = runner.invoke(app, ["cache-teacher", "--config", "tiny", "--fasta", str(tmp_path / "nope.fa"),
                                 "--teacher", str(inputs / "teacher"), "--out", str(tmp_path / "c")])
    assert result.exit_code == 1
    assert "nope.fa" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "c" / "manifest.json").exists()
