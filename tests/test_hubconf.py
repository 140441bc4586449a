"""``torch.hub.load(repo_dir, "model" | "tokenizer", name, source="local")`` through the
repository's ``hubconf.py``, by directory and by card name, in a fresh process (torch.hub puts
the repository on sys.path and imports hubconf.py, as a user's script would)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from hub_helpers import make_tiny_bert, write_card

REPO = Path(__file__).resolve().parents[1]


def _tiny_bert_with_tokenizer(folder: Path) -> Path:
    make_tiny_bert(folder)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "hub", "##s"]
    vocab += [f"w{i}" for i in range(100 - len(vocab))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer",
                                                              "do_lower_case": True}))
    return folder


def test_torch_hub_load_model_and_tokenizer(tmp_path):
    folder = _tiny_bert_with_tokenizer(tmp_path / "tiny-bert")
    cards = tmp_path / "cards"
    cards.mkdir()
    write_card(cards, "tiny-hub-bert", source=folder.as_uri())
    code = (
        "import sys, torch\n"
        "repo, folder = sys.argv[1], sys.argv[2]\n"
        "for name in (folder, 'tiny-hub-bert'):\n"
        "    m = torch.hub.load(repo, 'model', name, source='local', trust_repo=True)\n"
        "    tok = torch.hub.load(repo, 'tokenizer', name, source='local', trust_repo=True)\n"
        "    enc = tok('hello hubs world', return_tensors='pt')\n"
        "    out = m(**enc)['hidden_states'].detach()\n"
        "    print(type(m).__name__, type(tok).__name__, enc['input_ids'].tolist(),"
        " float(out.abs().sum()))\n"
        "import hubconf; print(sorted(hubconf.dependencies))\n")
    env = dict(os.environ, HUBLOADER_CARDS_PATH=str(cards), HUBLOADER_HOME=str(tmp_path / "home"),
               TORCH_HOME=str(tmp_path / "torch"))
    run = subprocess.run([sys.executable, "-c", code, str(REPO), str(folder)], env=env,
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    from hubloader.models import BertModel

    want = BertModel.from_pretrain(str(folder))
    ids = torch.tensor([[2, 5, 7, 8, 6, 3]])  # [CLS] hello hub ##s world [SEP]
    total = float(want(ids)["hidden_states"].abs().sum())
    for line in lines[:2]:
        assert line.startswith("BertModel Tokenizer [[2, 5, 7, 8, 6, 3]]"), line
        assert abs(float(line.split()[-1]) - total) < 1e-3
    import importlib.util

    for dep in ast.literal_eval(lines[2]):  # what torch.hub checks before calling an entry
        assert importlib.util.find_spec(dep) is not None, dep
