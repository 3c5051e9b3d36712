import pytest
import yaml

from had.config import ConfigError, RunConfig, load_config, presets


def test_presets_load_and_roundtrip(tmp_path):
    assert {"tiny", "had-1.1m"} <= set(presets())
    for name in presets():
        cfg = load_config(name)
        path = tmp_path / f"{name}.yaml"
        cfg.save(path)
        assert load_config(str(path)) == cfg


def test_paper_recipe_defaults():
    cfg = load_config("had-1.1m")
    assert cfg.genome.window == 1024
    assert cfg.train.batch_size == 1024 and cfg.train.steps == 10_000
    assert cfg.train.lr == pytest.approx(8e-3) and cfg.train.betas == (0.9, 0.95)
    assert cfg.teacher.model == "InstaDeepAI/nucleotide-transformer-v2-500m-multi-species"


def test_overrides_apply_and_none_is_ignored():
    cfg = load_config("tiny", {"train.steps": 7, "train.lr": None})
    assert cfg.train.steps == 7
    assert cfg.train.lr == load_config("tiny").train.lr


@pytest.mark.parametrize(
    "body, message",
    [
        ({"train": {"stpes": 3}}, "unknown key 'stpes'.*did you mean 'steps'"),
        ({"trian": {"steps": 3}}, "unknown section 'trian'.*did you mean 'train'"),
        ({"genome": ["not", "a", "mapping"]}, "expected a mapping"),
    ],
    ids=["misspelt-key", "misspelt-section", "not-a-mapping"],
)
def test_bad_yaml_is_named(tmp_path, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(ConfigError, match=message):
        load_config(str(path))


def test_unknown_preset_and_missing_file():
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_config("nope")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("missing/dir/x.yaml")


def test_unknown_override_key():
    with pytest.raises(ConfigError, match="unknown key 'lrr' in section 'train'"):
        load_config(None, {"train.lrr": 1.0})
    assert isinstance(load_config(None), RunConfig)


BAD_VALUES = [
    ("genome.window", "abc", "genome.window: expected an integer, got 'abc'"),
    ("genome.window", 256.0, "genome.window: expected an integer, got 256.0"),
    ("genome.window", True, "genome.window: expected an integer, got true"),
    ("genome.window", 5, r"genome.window=5: must be >= 6"),
    ("genome.stride", 0, r"genome.stride=0: must be >= 1"),
    ("genome.contigs", 1.5, "genome.contigs: expected a string, got 1.5"),
    ("genome.max_n_fraction", 1.5, r"genome.max_n_fraction=1.5: must lie in \[0, 1\]"),
    ("teacher.dtype", "fp64", "teacher.dtype='fp64': must be one of auto, fp32, bf16, fp16"),
    ("teacher.layer", -2, "teacher.layer=-2"),
    ("teacher.device", "gpu", "teacher.device='gpu'"),
    ("mask.reverse_complement", "maybe", "mask.reverse_complement: expected true or false, got 'maybe'"),
    ("mask.reverse_complement", 1, "mask.reverse_complement: expected true or false, got 1"),
    ("mask.ratio", 1.5, r"mask.ratio=1.5: must lie in \(0, 1\]"),
    ("mask.ratio", 0, r"mask.ratio=0.0: must lie in \(0, 1\]"),
    ("mask.views", 0, "mask.views=0: must be >= 1"),
    ("mask.seed", -1, "mask.seed=-1: must be >= 0"),
    ("cache.workers", -1, "cache.workers=-1: must be >= 0"),
    ("cache.shard_windows", 0, "cache.shard_windows=0"),
    ("cache.feature_dtype", "fp8", "cache.feature_dtype='fp8'"),
    ("train.steps", "abc", "train.steps: expected an integer, got 'abc'"),
    ("train.steps", 0, "train.steps=0: must be >= 1"),
    ("train.steps", -3, "train.steps=-3: must be >= 1"),
    ("train.batch_size", 0, "train.batch_size=0: must be >= 1"),
    ("train.micro_batch_size", 10_000, "train.micro_batch_size=10000: must be <= train.batch_size"),
    ("train.lr", -1, r"train.lr=-1.0: must be > 0"),
    ("train.lr", "fast", "train.lr: expected a number, got 'fast'"),
    ("train.lr", float("nan"), "train.lr: expected a number, got NaN"),
    ("train.betas", 0.9, "train.betas: expected a list of 2 values, got 0.9"),
    ("train.betas", [0.9, 1.0], r"train.betas=\[0.9, 1.0\]: must lie in \[0, 1\)"),
    ("train.precision", "fp16", "train.precision='fp16'"),
    ("train.checkpoint_every", 0, "train.checkpoint_every=0"),
    ("train.device", "gpu", "train.device='gpu': must be auto, cpu, cuda or cuda:<index>"),
    ("eval.lrs", [], r"eval.lrs=\[\]: give at least one learning rate"),
    ("eval.lrs", [1e-3, -1], r"eval.lrs=\[0.001, -1.0\]: must be > 0"),
    ("eval.epochs", 0, "eval.epochs=0: must be >= 1"),
    ("eval.batch_size", 0, "eval.batch_size=0: must be >= 1"),
    ("eval.max_length", 5, r"eval.max_length=5: must be >= 6 nt \(one 6-mer token; null for no cut\)"),
    ("eval.max_train_samples", 0, "eval.max_train_samples=0: must be >= 1"),
    ("eval.workers", -1, "eval.workers=-1: must be >= 0"),
    ("eval.benchmark", "ntt", "eval.benchmark='ntt': must be one of nt, gb, gue"),
    ("eval.seeds", 0, "eval.seeds=0"),
    ("eval.val_fraction", 1.0, "eval.val_fraction=1.0"),
]


@pytest.mark.parametrize("key, value, message", BAD_VALUES, ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES])
def test_bad_values_are_refused_naming_the_option(tmp_path, key, value, message):
    with pytest.raises(ConfigError, match=message):  # --set
        load_config("tiny", sets={key: value})
    with pytest.raises(ConfigError, match=message):  # a CLI option
        load_config("tiny", {key: value})
    section, name = key.split(".")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({section: {name: value}}))
    with pytest.raises(ConfigError, match=message):  # a YAML file
        load_config(str(path))


def test_type_errors_in_a_file_name_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  steps: 10k\n")
    with pytest.raises(ConfigError, match=f"^{path}: train.steps: expected an integer, got '10k'$"):
        load_config(str(path))


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("genome.contigs", "chr2", ["chr2"]),  # one value for a list: a one-element list, not ['c', 'h', ...]
        ("genome.contigs", 1, ["1"]),  # Ensembl contig names are numbers to YAML
        ("genome.exclude_contigs", ["chrM", "X"], ["chrM", "X"]),
        ("genome.stride", None, None),
        ("train.lr", "8e-3", 8e-3),  # YAML 1.1 reads 8e-3 as a string
        ("train.weight_decay", 0, 0.0),
        ("train.betas", [0.8, 0.99], (0.8, 0.99)),
        ("eval.lrs", 0.001, [0.001]),
        ("eval.epochs", None, None),
        ("mask.reverse_complement", False, False),
    ],
)
def test_values_are_coerced_to_the_field_type(key, value, expected):
    section, name = key.split(".")
    got = getattr(getattr(load_config("tiny", sets={key: value}), section), name)
    assert got == expected and type(got) is type(expected)


def test_set_null_unsets_an_option_left_set_by_the_preset():
    assert load_config("tiny").eval.epochs is not None
    assert load_config("tiny", {"eval.epochs": None}).eval.epochs == load_config("tiny").eval.epochs
    assert load_config("tiny", sets={"eval.epochs": None}).eval.epochs is None


def test_invalid_yaml_is_one_line_naming_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train:\n  steps: 3\n  lr: [0.1\neval:\n  seeds: 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}:")
    assert "not valid YAML" in message
    line = int(message[len(str(path)) + 1:].split(":")[0])
    assert 3 <= line <= 5  # yaml reports where the unclosed list of line 3 runs into the next key
    binary = tmp_path / "genome.yaml"
    binary.write_bytes(b"\x1f\x8b\x08\x00\xff\xfe")
    with pytest.raises(ConfigError, match="genome.yaml: cannot read the config"):
        load_config(str(binary))
