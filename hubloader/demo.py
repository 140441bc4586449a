"""``hubloader demo``: publish a small model into a local folder hub, load it back by name,
run a forward pass, and report what was loaded and how long each step took."""

from __future__ import annotations

import json
import string
import tempfile
import time
from pathlib import Path
from typing import Callable

__all__ = ["publish_demo_model", "run_demo", "DEMO_NAME"]

DEMO_NAME = "demo-bert-tiny"
_WORDS = ("the a an is was good bad great terrible movie film plot actor loved hated it this "
          "that very not really and but i you we").split()


def publish_demo_model(hub: Path, *, name: str = DEMO_NAME, seed: int = 0) -> Path:
    """Write a tiny random-weight BERT classifier with vocabulary and card to ``hub/name``."""
    import torch

    from .cards import card_text
    from .models import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + _WORDS + list(string.ascii_lowercase)
    vocab += ["##" + c for c in string.ascii_lowercase] + list(string.punctuation)
    config = BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=128, max_position_embeddings=128,
                        num_labels=2, id2label={"0": "negative", "1": "positive"},
                        label2id={"negative": 0, "positive": 1})
    model = BertForSequenceClassification.from_config(config)
    out = model.save_pretrained(hub / name)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}) + "\n")
    meta = {"name": name, "display-name": "Tiny demo BERT (random weights)",
            "tasks": ["text-classification"], "license": "Apache-2.0", "framework": "PyTorch",
            "architecture": "bert", "author": "hubloader demo", "tags": ["demo"]}
    (out / "README.md").write_text(card_text(meta, "A 2-layer BERT with random weights, made by "
                                             "`hubloader demo`.\n"), encoding="utf-8")
    return out


def run_demo(*, hub: Path | None = None, echo: Callable[[str], None] = print) -> dict:
    """Publish, load by name, run one forward; return the figures (seconds) it printed."""
    import torch

    from .auto import AutoLoader

    with tempfile.TemporaryDirectory(prefix="hubloader-demo-") as tmp:
        hub = Path(hub) if hub else Path(tmp) / "hub"
        t0 = time.perf_counter()
        path = publish_demo_model(hub)
        t_publish = time.perf_counter() - t0
        echo(f"published {DEMO_NAME!r} into the local hub {hub} ({t_publish * 1e3:.1f} ms)")

        t0 = time.perf_counter()
        loader = AutoLoader("text-classification", model_name=DEMO_NAME, model_dir=hub)
        model, tok = loader.get_model(), loader.get_tokenizer()
        t_load = time.perf_counter() - t0
        report = model.load_report
        echo(f"loaded {type(model).__name__} by name from {path} in {t_load * 1e3:.1f} ms: "
             f"{report.num_tensors} tensors, {report.num_bytes:,} bytes from "
             f"{', '.join(report.files)}; {model.num_parameters():,} parameters; "
             f"missing {len(report.missing)}, unexpected {len(report.unexpected)}")

        texts = ["this movie was great", "i hated the plot"]
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model(**tok(texts))
        t_forward = time.perf_counter() - t0
        labels = model.config.id2label
        for text, row in zip(texts, out["logits"].softmax(-1)):
            best = int(row.argmax())
            echo(f"  {text!r}: {labels[str(best)]} (p={row[best]:.3f}; random weights)")
        echo(f"forward pass on {len(texts)} sentences: {t_forward * 1e3:.1f} ms; output keys: "
             f"{', '.join(out)}")
    return {"publish_s": t_publish, "load_s": t_load, "forward_s": t_forward}
