"""The CLI: help for every option, clear one-line errors for bad input, no tracebacks."""
import typer.main
import pytest
from typer.testing import CliRunner

from had.cli import app

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
