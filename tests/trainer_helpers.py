"""A tiny BERT folder with its WordPiece vocabulary, and a synthetic separable task: a positive
sentence is mostly positive words, a negative one mostly negative words, around shared filler
(separable by the bag of words). Shared by the Trainer tests and their torchrun script."""

from __future__ import annotations

import random
from pathlib import Path

import torch

POSITIVE = ["good", "great", "fine", "nice", "happy", "best", "love", "fun"]
NEGATIVE = ["bad", "awful", "poor", "sad", "worst", "hate", "dull", "boring"]
FILLER = ["the", "a", "movie", "was", "plot", "actor", "and", "it", "really", "quite", "film",
          "story", "end", "music", "very", "so"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def write_base_model(root: Path) -> Path:
    """A randomly initialized tiny BERT (no dropout, so runs are reproducible) with its vocab."""
    from hubloader.models import BertConfig, BertModel

    root.mkdir(parents=True, exist_ok=True)
    vocab = SPECIAL + POSITIVE + NEGATIVE + FILLER
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=32,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertModel.from_config(cfg).save_pretrained(root)
    return root


def sentences(n: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        label = rng.randrange(2)
        words = rng.sample(POSITIVE if label else NEGATIVE, 4) + rng.sample(FILLER, 2)
        rng.shuffle(words)
        out.append((" ".join(words), label))
    return out


def collate_with(tokenizer):
    def collate(samples):
        batch = tokenizer([s for s, _ in samples], padding=True, return_tensors="pt")
        batch["labels"] = torch.tensor([y for _, y in samples])
        return batch
    return collate


def weights_digest(model) -> str:
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode() + t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
