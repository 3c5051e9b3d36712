"""Test teachers of the non-NT families, built from published facts, never from had's own code.

- `char_tokenizer`: a HF fast tokenizer with the ids, specials and padding side of HyenaDNA /
  Caduceus or NTv3, as ../shared/reference/char_tokenizers.md states them.
- `bert_teacher`: a small random BertForMaskedLM saved with save_pretrained next to the given
  tokenizer files (the real DNABERT-2 files, or a `char_tokenizer` folder).
"""
import shutil
from pathlib import Path

from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

# char_tokenizers.md, per style: vocabulary in id order, specials appended to a sequence, padding side
CHAR_STYLES = {
    "hyena": (["[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]", "A", "C", "G", "T", "N"],
              ("", "[SEP]"), "left", {"unk_token": "[UNK]", "pad_token": "[PAD]", "mask_token": "[MASK]",
                                      "cls_token": "[CLS]", "sep_token": "[SEP]", "bos_token": "[BOS]"}),
    "ntv3": (["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>", "A", "T", "C", "G", "N"],
             ("", ""), "right", {"unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
                                 "cls_token": "<cls>", "eos_token": "<eos>", "bos_token": "<bos>"}),
}


def char_tokenizer(out_dir: Path, style: str = "hyena") -> PreTrainedTokenizerFast:
    """Save a single-nucleotide HF tokenizer of `style` into out_dir; returns it."""
    vocab, (before, after), side, specials = CHAR_STYLES[style]
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token=specials["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")  # one token per character
    if before or after:
        template = " ".join(t for t in (before, "$A", after) if t)
        backend.post_processor = processors.TemplateProcessing(
            single=template, special_tokens=[(t, vocab.index(t)) for t in (before, after) if t])
    extra = [t for t in vocab if t.startswith(("[", "<")) and t not in specials.values()]
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, padding_side=side, additional_special_tokens=extra,
                                  **specials)
    tok.save_pretrained(out_dir)
    return tok


def bert_teacher(out_dir: Path, tokenizer_dir: Path, hidden_size: int = 32, seed: int = 0) -> Path:
    """A random 2-layer BERT masked LM whose vocabulary is the tokenizer's, saved with its files."""
    # Imported here: transformers' model classes import triton, which tests/kernels must import
    # first (with TRITON_INTERPRET set), and test modules are all imported before any test runs.
    import torch
    from transformers import BertConfig, BertForMaskedLM

    tok = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = BertConfig(vocab_size=len(tok), hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=2 * hidden_size, max_position_embeddings=512, pad_token_id=tok.pad_token_id,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(seed)
    BertForMaskedLM(config).eval().save_pretrained(out_dir, safe_serialization=True)
    for path in Path(tokenizer_dir).iterdir():
        if path.name.startswith(("tokenizer", "special_tokens")):
            shutil.copyfile(path, out_dir / path.name)
    return out_dir
