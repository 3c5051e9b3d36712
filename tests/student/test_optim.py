"""AdamW groups: decay on every matrix / kernel / embedding, none on vectors, each parameter once."""
import torch

from fake_cache import TINY_STUDENT
from had.student import HadConfig, HadForPretraining
from had.optim import decay_groups


def test_decay_groups_split_by_shape():
    model = HadForPretraining(HadConfig.from_kwargs(dict(TINY_STUDENT, teacher_dim=24)))
    model.had.norm.weight.requires_grad_(False)  # frozen parameters are left out
    decay, no_decay = decay_groups(model, 0.1)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)
    by_id = {id(p): n for n, p in model.named_parameters()}
    decayed = {by_id[id(p)] for p in decay["params"]}
    kept = {by_id[id(p)] for p in no_decay["params"]}
    assert "had.embed.weight" in decayed and "distill_head.weight" in decayed
    assert {"had.gdn_blocks.0.mixer.fwd.A_log", "had.gdn_blocks.0.norm1.weight", "distill_head.bias"} <= kept
    assert all(model.get_parameter(n).ndim >= 2 for n in decayed)
    assert all(model.get_parameter(n).ndim < 2 for n in kept)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(decayed | kept) == sorted(trainable) and len(decayed) + len(kept) == len(trainable)
    assert "had.norm.weight" not in decayed | kept
    torch.optim.AdamW([decay, no_decay])  # a valid optimizer spec
