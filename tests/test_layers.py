"""The package's import layers: no module imports one above it (module level or inside a function)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "had"


def _imports(path: Path) -> set[str]:
    """Every absolute `had...` module that `path` imports, anywhere in the file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {name for name in out if name == "had" or name.startswith("had.")}


def _offenders(files: list[Path], banned: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in files:
        bad = sorted(m for m in _imports(path) if any(m == b or m.startswith(b + ".") for b in banned))
        if bad:
            found[str(path.relative_to(ROOT.parent))] = bad
    return found


def test_data_knows_no_run_config_and_no_model():
    files = sorted((ROOT / "data").glob("*.py"))
    # had.teacher: tokenizer_load borrows its file fingerprint (moves with the fingerprints' one home).
    assert _offenders(files, ("had.config", "had.student", "had.pipeline", "had.training", "had.cli")) == {}


def test_config_knows_no_model():
    assert _offenders([ROOT / "config.py"], ("had.student", "had.kernels", "had.pipeline", "had.training")) == {}


def test_model_knows_no_batch_builder():
    files = [ROOT / "student" / "modeling_had.py", ROOT / "student" / "configuration_had.py"]
    assert _offenders(files, ("had.student.collate", "had.pipeline", "had.training", "had.config")) == {}


def test_the_checks_see_imports_inside_functions(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from had.config import RunConfig\n")
    assert _imports(path) == {"had.config"}
