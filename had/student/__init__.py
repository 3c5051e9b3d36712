"""The HAD student model, HF-shaped; importing this registers it with the Auto classes.

    import had.student
    from transformers import AutoModel
    model = AutoModel.from_pretrained("runs/had/model")   # a HadModel
"""
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from had.student.collate import collate_cache_items
from had.student.configuration_had import HadConfig
from had.student.modeling_had import (
    HadForPretraining,
    HadForSequenceClassification,
    HadModel,
    HadPretrainingOutput,
)

AutoConfig.register("had", HadConfig, exist_ok=True)
AutoModel.register(HadConfig, HadModel, exist_ok=True)
AutoModelForSequenceClassification.register(HadConfig, HadForSequenceClassification, exist_ok=True)

__all__ = [
    "HadConfig",
    "HadModel",
    "HadForPretraining",
    "HadForSequenceClassification",
    "HadPretrainingOutput",
    "collate_cache_items",
]
