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
