"""``hubloader demo``: publish a small model into a local folder hub, load it back by name,
run a forward pass, and report what was loaded and how long each step took."""

from __future__ import annotations

import contextlib
import json
import os
import string
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["publish_demo_model", "run_demo", "DEMO_NAME"]

DEMO_NAME = "demo-bert-tiny"
_WORDS = ("the a an is was good bad great terrible movie film plot actor loved hated it this "
          "that very not really and but i you we").split()


def publish_demo_model(hub: Path, *, name: str = DEMO_NAME, seed: int = 0) -> Path:
    """Write a tiny random-weight BERT classifier with vocabulary and card to ``hub/name``."""
    import torch

    from ..catalogue.cards import card_text
    from ..models import BertConfig, BertForSequenceClassification

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


@contextlib.contextmanager
def _scoped_env(**values: str):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _load(echo, label: str) -> tuple[Any, Any, float]:
    from ..auto import AutoLoader

    t0 = time.perf_counter()
    loader = AutoLoader("text-classification", model_name=DEMO_NAME)
    model, tok = loader.get_model(), loader.get_tokenizer()
    seconds = time.perf_counter() - t0
    report = model.load_report
    assert report is not None  # a native model always carries its load report
    echo(f"{label}: loaded {type(model).__name__} by name in {seconds * 1e3:.1f} ms from "
         f"{loader.model_dir}: {report.num_tensors} tensors, {report.num_bytes:,} bytes; "
         f"missing {len(report.missing)}, unexpected {len(report.unexpected)}")
    return model, tok, seconds


def run_demo(*, hub: Path | None = None, echo: Callable[[str], None] = print) -> dict:
    """Publish into a local folder hub, load by name through the cache twice (cold, then
    warm), run one forward; return the figures (seconds)."""
    import torch

    with tempfile.TemporaryDirectory(prefix="hubloader-demo-") as tmp:
        hub = Path(hub) if hub else Path(tmp) / "hub"
        cache = Path(tmp) / "cache"
        t0 = time.perf_counter()
        publish_demo_model(hub)
        t_publish = time.perf_counter() - t0
        echo(f"published {DEMO_NAME!r} into the local hub {hub} ({t_publish * 1e3:.1f} ms)")
        # Every card name is served from the folder hub; the cache is a fresh one.
        with _scoped_env(HUBLOADER_ENDPOINT=hub.resolve().as_uri(), HUBLOADER_HOME=str(cache)):
            echo(f"HUBLOADER_ENDPOINT={hub.resolve().as_uri()}  HUBLOADER_HOME={cache}")
            _, _, t_cold = _load(echo, "cold (fetch, verify, cache)")
            model, tok, t_warm = _load(echo, "warm (from the cache)")
        echo(f"{model.num_parameters():,} parameters; warm load {t_cold / max(t_warm, 1e-9):.1f}x "
             "faster than cold")
        texts = ["this movie was great", "i hated the plot"]
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model(**tok(texts, padding=True, truncation=True, return_tensors="pt"))
        t_forward = time.perf_counter() - t0
        labels = model.config.id2label
        for text, row in zip(texts, out["logits"].softmax(-1)):
            best = int(row.argmax())
            echo(f"  {text!r}: {labels[str(best)]} (p={row[best]:.3f}; random weights)")
        echo(f"forward pass on {len(texts)} sentences: {t_forward * 1e3:.1f} ms; output keys: "
             f"{', '.join(out)}")
    return {"publish_s": t_publish, "cold_s": t_cold, "warm_s": t_warm, "forward_s": t_forward}
