"""The CLI: help for every option, clear one-line errors for bad input, no tracebacks."""
import pytest
import torch
import typer.main
from typer.testing import CliRunner

from had.cli import app, error_line
from had.config import load_config
from had.errors import HadError

runner = CliRunner()


def test_every_command_and_option_has_help():
    group = typer.main.get_command(app)
    assert set(group.commands) >= {"cache-teacher", "cache-info", "train", "eval", "demo"}
    for name, command in group.commands.items():
        assert command.help, f"{name} has no help text"
        for param in command.params:
            if param.name != "help":
                assert getattr(param, "help", None), f"{name}: option {param.name} has no help"
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, result.output


def test_version_lists_the_stack():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    for name in ("had", "torch", "triton", "transformers", "zarr", "dask", "cuda"):
        assert name in result.output


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--config", "no-such-preset"], "unknown preset 'no-such-preset'"),
        (["train", "--config", "tiny", "--set", "train.stpes=3"], "unknown key 'stpes'"),
        (["train", "--config", "tiny", "--set", "oops"], "expected section.key=value"),
        (["eval", "--config", "missing.yaml"], "config file not found: missing.yaml"),
    ],
    ids=["unknown-preset", "unknown-key", "malformed-set", "missing-config-file"],
)
def test_bad_input_is_one_clear_line(argv, message):
    result = runner.invoke(app, argv)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--config", "tiny", "--set", "train.steps=abc"], "train.steps: expected an integer, got 'abc'"),
        (["train", "--config", "tiny", "--lr", "-1"], "train.lr=-1.0: must be > 0"),
        (["train", "--config", "tiny", "--set", "student.d_model=abc"], "student.d_model: expected an integer"),
        (["train", "--config", "tiny", "--set", "train.lr=[1,"], "--set 'train.lr=[1,': the value is not valid YAML"),
        (["cache-teacher", "--config", "tiny", "--mask-ratio", "1.5", "--dry-run"], "mask.ratio=1.5"),
        (["cache-teacher", "--config", "tiny", "--set", "genome.window=256.0"], "genome.window: expected an integer"),
        (["cache-teacher", "--config", "tiny", "--set", "mask.reverse_complement=maybe"], "expected true or false"),
        (["eval", "--config", "tiny", "--batch-size", "0"], "eval.batch_size=0: must be >= 1"),
        (["eval", "--config", "tiny", "--max-train-samples", "0"], "eval.max_train_samples=0"),
        (["eval", "--config", "tiny", "--max-length", "3"], "eval.max_length=3: must be >= 6 nt (one 6-mer token"),
        (["cache-teacher", "--config", "tiny", "--set", "teacher.cpu_threads=0"], "teacher.cpu_threads=0: must be >= 1"),
        (["experiment", "--set", "train.steps=abc"], "train.steps: expected an integer"),
        (["demo", "--set", "train.steps=abc"], "train.steps: expected an integer"),
    ],
    ids=lambda x: " ".join(x) if isinstance(x, list) else None,
)
def test_bad_values_fail_at_once_in_one_line(argv, message, monkeypatch):
    for name in ("demo", "experiment"):  # were a check missed, fail fast instead of running for minutes
        monkeypatch.setattr(f"had.pipeline.{name}.run", lambda *a, **k: pytest.fail("work started"))
    result = runner.invoke(app, argv)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: ") and message in line


def test_help_gives_every_default():
    """Options whose default comes from --config say so and quote the presets' values."""
    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        for param in command.params:
            if param.required or param.name in ("help", "set_", "compare") or (
                    param.default is not None and param.show_default):
                continue  # typer prints "[default: ...]" itself
            assert "default" in param.help, f"{name} --{param.name}: help gives no default"
    tiny, paper = load_config("tiny"), load_config("had-1.1m")
    train_help = {p.name: p.help for p in group.commands["train"].params}
    assert f"had-1.1m: {paper.train.steps}, tiny: {tiny.train.steps}" in train_help["steps"]
    cache_help = {p.name: p.help for p in group.commands["cache-teacher"].params}
    assert f"had-1.1m: {paper.genome.window}, tiny: {tiny.genome.window}" in cache_help["window"]
    assert f"had-1.1m: {paper.cache.path}, tiny: {tiny.cache.path}" in cache_help["out"]


def test_cache_teacher_help_names_the_genome_filters_and_gzip_limits():
    result = runner.invoke(app, ["cache-teacher", "--help"], env={"COLUMNS": "250"})
    text = " ".join(result.output.replace("│", " ").split())
    for key in ("genome.contigs=[chr1,chr2]", "genome.exclude_contigs=[chrM]", "genome.max_n_fraction=0.1"):
        assert key in text  # rendered literally, not eaten as rich markup
    assert ".fai + .gzi for a bgzip one" in text and "plain gzip" in text


def test_experiment_help_lists_every_experiment_key():
    """`had experiment --help` names every experiment.* and experiment.teacher.* key (read from the
    dataclasses here, since the CLI lists them by hand to keep --help from importing torch)."""
    import dataclasses

    from had.pipeline.experiment import Experiment
    from had.teacher_pretrain import TeacherPretrainConfig

    result = runner.invoke(app, ["experiment", "--help"], env={"COLUMNS": "250"})
    text = " ".join(result.output.replace("│", " ").split())
    keys = [f.name for f in dataclasses.fields(Experiment) if f.name not in ("preset", "data", "teacher")]
    for key in keys + [f.name for f in dataclasses.fields(TeacherPretrainConfig)]:
        assert f" {key}" in text, f"experiment --help does not name {key}"
    assert "experiment.teacher.<key>" in text


@pytest.mark.parametrize("args, message", [
    ([], "--data real needs --data-root"),
    (["--data-root", "nowhere"], "--data-root nowhere: expected exactly one FASTA in nowhere/genome"),
])
def test_real_data_needs_a_data_root_given_explicitly(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["experiment", "--data", "real", "--out", "runs/x", *args])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert not (tmp_path / "runs").exists()  # refused before anything was written


class _Broken(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        raise HadError("cache/features: shard 3 chunk 0 is damaged")


def test_an_error_raised_in_a_dataloader_worker_is_shown_as_its_own_line():
    loader = torch.utils.data.DataLoader(_Broken(), num_workers=1)
    with pytest.raises(HadError) as caught:
        next(iter(loader))
    assert "Traceback" in str(caught.value)  # what torch hands back ...
    assert error_line(caught.value) == "cache/features: shard 3 chunk 0 is damaged"  # ... and what users see


# Each command's options and the config key each one sets (the reference the CLI's derived maps must meet).
OPTION_KEYS = {
    "cache-teacher": [
        ("--fasta", "g.fa", "genome.fasta", "g.fa"), ("--bed", "r.bed", "genome.bed", "r.bed"),
        ("--split", "train", "genome.split", "train"), ("--window", "96", "genome.window", 96),
        ("--stride", "48", "genome.stride", 48), ("--teacher", "t-dir", "teacher.model", "t-dir"),
        ("--trust-remote-code", None, "teacher.trust_remote_code", True), ("--layer", "2", "teacher.layer", 2),
        ("--dtype", "bf16", "teacher.dtype", "bf16"),
        ("--max-tokens-per-batch", "77", "teacher.max_tokens_per_batch", 77),
        ("--mask-ratio", "0.3", "mask.ratio", 0.3), ("--views", "3", "mask.views", 3),
        ("--rc", None, "mask.reverse_complement", True), ("--teacher-input", "full", "mask.teacher_input", "full"),
        ("--seed", "9", "mask.seed", 9), ("--out", "c-dir", "cache.path", "c-dir"),
        ("--shard-windows", "5", "cache.shard_windows", 5), ("--feature-dtype", "int8", "cache.feature_dtype", "int8"),
        ("--workers", "2", "cache.workers", 2), ("--scheduler", "tcp://h:1", "cache.scheduler", "tcp://h:1"),
        ("--overwrite", None, "cache.overwrite", True),
    ],
    "train": [
        ("--cache", "c-dir", "cache.path", "c-dir"), ("--out", "r-dir", "train.out", "r-dir"),
        ("--steps", "7", "train.steps", 7), ("--batch-size", "8", "train.batch_size", 8),
        ("--micro-batch-size", "4", "train.micro_batch_size", 4), ("--lr", "0.5", "train.lr", 0.5),
        ("--num-workers", "1", "train.num_workers", 1), ("--precision", "bf16", "train.precision", "bf16"),
        ("--compile", None, "train.compile", True), ("--resume", None, "train.resume", True),
        ("--checkpoint-every", "3", "train.checkpoint_every", 3), ("--log-every", "2", "train.log_every", 2),
        ("--tensorboard", None, "train.tensorboard", True), ("--seed", "9", "train.seed", 9),
        ("--device", "cpu", "train.device", "cpu"),
    ],
    "eval": [
        ("--model", "m-dir", "eval.model", "m-dir"), ("--data-root", "d-dir", "eval.data_root", "d-dir"),
        ("--benchmark", "gue", "eval.benchmark", "gue"), ("--task", "t1", "eval.tasks", ["t1"]),
        ("--protocol", "probe", "eval.protocol", "probe"),
        ("--nt-version", "original", "eval.nt_version", "original"), ("--lr", "0.5", "eval.lrs", [0.5]),
        ("--seeds", "3", "eval.seeds", 3), ("--epochs", "2", "eval.epochs", 2),
        ("--batch-size", "4", "eval.batch_size", 4), ("--max-length", "60", "eval.max_length", 60),
        ("--max-train-samples", "9", "eval.max_train_samples", 9), ("--out", "o-dir", "eval.out", "o-dir"),
        ("--trust-remote-code", None, "eval.trust_remote_code", True), ("--workers", "2", "eval.workers", 2),
        ("--scheduler", "tcp://h:1", "eval.scheduler", "tcp://h:1"), ("--device", "cpu", "eval.device", "cpu"),
    ],
}


@pytest.mark.parametrize("command", sorted(OPTION_KEYS))
def test_every_option_sets_its_config_key_and_unset_ones_keep_the_preset(command, monkeypatch):
    module = {"cache-teacher": "cache_teacher"}.get(command, command)
    seen = []
    monkeypatch.setattr(f"had.pipeline.{module}.run", lambda cfg, *a, **k: seen.append(cfg))
    options = OPTION_KEYS[command]
    params = {p.opts[0] for p in typer.main.get_command(app).commands[command].params
              if p.name not in ("config", "set_", "help", "dry_run", "compare")}
    assert {option for option, *_ in options} == params  # the table covers every option
    argv = [command, "--config", "tiny"]
    for option, value, *_ in options:
        argv += [option] if value is None else [option, value]
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    for option, _, key, expected in options:
        section, name = key.split(".")
        assert getattr(getattr(seen[0], section), name) == expected, option
    assert runner.invoke(app, [command, "--config", "tiny"]).exit_code == 0
    assert seen[1] == load_config("tiny")  # nothing given: the preset, untouched
