"""Teacher loading: the tiny teacher round-trips through the path real NTv2 dirs use."""
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import EsmForMaskedLM

from had.errors import HadError
from had.teacher import build_tiny_teacher, load_teacher

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_teacher(tmp_path_factory.mktemp("teacher"), hidden_size=32, num_layers=2, num_heads=4)


def _batch(teacher, seqs):
    enc = teacher.tokenizer.batch_encode(seqs)
    return torch.from_numpy(enc["input_ids"]), torch.from_numpy(enc["attention_mask"])


def test_features_match_a_direct_transformers_forward(tiny):
    teacher = load_teacher(str(tiny), device="cpu")
    reference = EsmForMaskedLM.from_pretrained(tiny).esm.eval()
    ids, attn = _batch(teacher, ["ACGTACGGTTNNACGTTTAGCA", "TTGACA"])
    with torch.no_grad():
        ref = reference(input_ids=ids, attention_mask=attn).last_hidden_state
        # Layer k by hand: the same weights cut to k blocks, final norm removed
        # (only the unused contact head changes shape).
        by_hand = []
        for k in range(teacher.num_hidden_layers + 1):
            cut = EsmForMaskedLM.from_pretrained(tiny, num_hidden_layers=k, ignore_mismatched_sizes=True).esm.eval()
            cut.encoder.emb_layer_norm_after = torch.nn.Identity()
            by_hand.append(cut(input_ids=ids, attention_mask=attn).last_hidden_state)
    assert torch.equal(teacher.features(ids, attn), ref)
    for layer in range(teacher.num_hidden_layers + 1):
        torch.testing.assert_close(teacher.features(ids, attn, layer), by_hand[layer], atol=1e-5, rtol=1e-5)
    # -1 is after the final LayerNorm, not the last block's raw output.
    torch.testing.assert_close(ref, reference.encoder.emb_layer_norm_after(by_hand[-1]), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(teacher.features(ids, attn), by_hand[-1])


def test_padding_does_not_change_real_tokens(tiny):
    teacher = load_teacher(str(tiny), device="cpu")
    ids, attn = _batch(teacher, ["ACGTACGGTTNNACGTTTAGCAAAAAAGGGGG", "TTGACA"])
    alone = teacher.features(ids[1:, :3], attn[1:, :3])
    torch.testing.assert_close(teacher.features(ids, attn)[1, :3], alone[0], atol=1e-5, rtol=1e-5)


def test_metadata_tokenizer_and_fingerprint(tiny, tmp_path):
    teacher = load_teacher(str(tiny), device="cpu")
    assert (teacher.hidden_size, teacher.num_hidden_layers, teacher.max_tokens) == (32, 2, 2048)
    assert teacher.tokenizer.vocab_hash == hashlib.sha256((tiny / "vocab.txt").read_bytes()).hexdigest()
    assert teacher.tokenizer.cls_id == 3 and teacher.tokenizer.pad_id == 1
    assert load_teacher(str(tiny), device="cpu").fingerprint == teacher.fingerprint
    other = build_tiny_teacher(tmp_path / "other", hidden_size=32, num_layers=2, num_heads=4, seed=1)
    assert load_teacher(str(other), device="cpu").fingerprint != teacher.fingerprint
    assert load_teacher(str(tiny), device="cpu", dtype="bf16").dtype == torch.bfloat16


def test_a_moved_teacher_folder_is_the_same_teacher(tiny, tmp_path):
    moved = load_teacher(str(shutil.copytree(tiny, tmp_path / "elsewhere" / "teacher")), device="cpu")
    teacher = load_teacher(str(tiny), device="cpu")
    assert (moved.config_hash, moved.fingerprint) == (teacher.config_hash, teacher.fingerprint)
    wider = load_teacher(str(build_tiny_teacher(tmp_path / "wider", hidden_size=64, num_layers=2, num_heads=4)),
                         device="cpu")
    assert wider.config_hash != teacher.config_hash


def test_bad_layer_and_missing_model(tiny, tmp_path):
    teacher = load_teacher(str(tiny), device="cpu")
    ids, attn = _batch(teacher, ["ACGTAC"])
    for layer in (3, -2):
        with pytest.raises(HadError, match="teacher.layer"):
            teacher.features(ids, attn, layer)
    (tmp_path / "empty").mkdir()
    with pytest.raises(HadError, match="config.json"):
        load_teacher(str(tmp_path / "empty"))


def test_paths_that_cannot_be_a_teacher_are_named(tiny, tmp_path, monkeypatch):
    """Each wrong --teacher gets its own one-line reason instead of transformers' hub-id messages."""
    from had.student import HadConfig
    from had.student.modeling_had import HadForPretraining

    student = tmp_path / "runs" / "ref" / "model"
    HadForPretraining(HadConfig(d_model=16, n_gdn_layers=1, n_heads=2, head_dim=8, mlp_hidden=32, attn_heads=2,
                                teacher_dim=16, gdn_impl="naive")).save_pretrained(student)
    with pytest.raises(HadError, match=f"^{student} is a had student, not a teacher \\(use it with had eval --model\\)$"):
        load_teacher(str(student))
    with pytest.raises(HadError, match=r"^\S*g.fa is a file, expected a model directory or hub id$"):
        load_teacher(str(shutil.copyfile(tiny / "vocab.txt", tmp_path / "g.fa")))
    shutil.copytree(tiny, tmp_path / "tnw", ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(HadError, match=r"tnw has config.json but no weights \(model.safetensors or pytorch_model.bin\)"):
        load_teacher(str(tmp_path / "tnw"))
    monkeypatch.chdir(tmp_path)
    for missing in ("runs/nosuch/model", "../teacher", "/nonexistent/teacher"):
        with pytest.raises(HadError, match=f"^no such directory: {missing}$"):
            load_teacher(missing)

    # "org/name" that is no local folder is a hub id: handed to transformers as it is (offline here)
    import transformers

    asked = []

    def offline(name, **kwargs):
        asked.append(name)
        raise OSError("offline")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", offline)
    # "runs/x" is hub-id shaped: the message must not call it only a hub id
    for hub_id in ("InstaDeepAI/nucleotide-transformer-v2-500m-multi-species", "nt-v2", "runs/x"):
        with pytest.raises(HadError, match=f"^model {hub_id}: neither an existing local folder nor a hub id that "
                                           r"could be loaded \(offline\)$"):
            load_teacher(hub_id)
    assert asked == ["InstaDeepAI/nucleotide-transformer-v2-500m-multi-species", "nt-v2", "runs/x"]


def test_remote_code_checkpoint_needs_the_flag(tiny, tmp_path):
    ntv2 = SHARED / "reference" / "ntv2" / "v2-500m-multi-species"
    if not ntv2.is_dir():
        pytest.skip("../shared/reference/ntv2 not available")
    shutil.copytree(ntv2, tmp_path / "ntv2")
    with pytest.raises(HadError, match="trust-remote-code"):
        load_teacher(str(tmp_path / "ntv2"))
    # The same check applies to any dir whose config routes through auto_map.
    shutil.copytree(tiny, tmp_path / "custom")
    config = json.loads((tmp_path / "custom" / "config.json").read_text())
    config["auto_map"] = {"AutoModelForMaskedLM": "modeling_esm.EsmForMaskedLM"}
    (tmp_path / "custom" / "config.json").write_text(json.dumps(config))
    with pytest.raises(HadError, match="trust_remote_code=true"):
        load_teacher(str(tmp_path / "custom"))


def test_tokenizer_comes_from_the_teachers_own_files(tiny, tmp_path):
    """An ESM folder without tokenizer files is NTv2-tokenized (as before the families); any other
    model without them is refused before its weights are read; BERT positions bound the input."""
    from dna_teachers import bert_teacher, char_tokenizer

    bare = tmp_path / "bare-esm"
    shutil.copytree(tiny, bare)
    for name in ("vocab.txt", "special_tokens_map.json", "tokenizer_config.json"):
        (bare / name).unlink()
    teacher = load_teacher(str(bare), device="cpu")
    assert teacher.tokenizer.family == "kmer" and teacher.tokenizer.vocab_hash == load_teacher(str(tiny)).tokenizer.vocab_hash

    char_tokenizer(tmp_path / "chars", "hyena")
    bert = bert_teacher(tmp_path / "bert", tmp_path / "chars")
    teacher = load_teacher(str(bert), device="cpu")
    assert teacher.tokenizer.family == "char" and teacher.max_tokens == 512
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (bert / name).unlink()
    (bert / "model.safetensors").write_bytes(b"not weights")  # never read: the tokenizer is refused first
    with pytest.raises(HadError, match="no tokenizer files"):
        load_teacher(str(bert), device="cpu")
    with pytest.raises(HadError, match="teacher.tokenizer=bpe"):
        load_teacher(str(tiny), device="cpu", tokenizer="bpe")
