"""Shared helpers for the publishing tests: a tiny BERT, hashing, code packages."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path

TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=64)


def tiny_bert(seed: int = 0):
    import torch

    from hubloader.models import BertConfig, BertModel

    torch.manual_seed(seed)
    return BertModel.from_config(BertConfig(**TINY))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def card(name: str, **extra) -> str:
    meta = {"name": name, "tasks": ["base"], "license": "mit", "author": "tests",
            "architecture": "custom", **extra}
    from hubloader.catalogue.cards import card_text

    return card_text(meta, "test package\n")


def write_hubconf_package(root: Path, *, folder: str, marker: Path, scale: float,
                          deps=("torch",)) -> Path:
    """A package of the downstream-platform interface: hubconf.py + <folder>/ (its own
    package) + weights/.

    Importing the package's code appends a line to ``marker``; the model's output is
    ``x * scale`` so two packages with the same folder name are told apart.
    """
    import torch

    root.mkdir(parents=True, exist_ok=True)
    pkg = root / folder
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .exported_model import TinyNet\n")
    (pkg / "exported_model.py").write_text(textwrap.dedent(f"""
        import os
        import torch
        from safetensors.torch import load_file

        with open({str(marker)!r}, "a") as fh:
            fh.write("imported {folder} scale={scale}\\n")

        class TinyNet(torch.nn.Module):
            SCALE = {scale}

            def __init__(self):
                super().__init__()
                self.lin = torch.nn.Linear(4, 4, bias=False)

            def forward(self, x):
                return self.lin(x) * self.SCALE

            @classmethod
            def from_pretrained(cls, load_weights=None):
                m = cls()
                load_weights = load_weights or os.path.join(
                    os.path.dirname(__file__), "..", "weights", "tiny.safetensors")
                m.load_state_dict(load_file(load_weights))
                return m
    """))
    (root / "hubconf.py").write_text(
        f"dependencies = {list(deps)!r}\n"
        f"from {folder} import TinyNet\n"
        "BIG_PRETRAINED_MODEL = TinyNet\n")
    (root / "weights").mkdir()
    from safetensors.torch import save_file

    save_file({"lin.weight": torch.eye(4)}, str(root / "weights" / "tiny.safetensors"))
    (root / "README.md").write_text(card(root.name))
    return root


def write_entry_package(root: Path, *, marker: Path, mode: str = "entry_file") -> Path:
    """An AlphaMed package: config.json with entry_file or entry_module, entry_class, param_file."""
    import torch
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    code = textwrap.dedent(f"""
        import torch
        with open({str(marker)!r}, "a") as fh:
            fh.write("imported entry\\n")

        class MyAutoNet(torch.nn.Module):
            def __init__(self, config):
                super().__init__()
                self.proj = torch.nn.Linear(config["width"], 2)

            def forward(self, x):
                return self.proj(x)
    """)
    cfg = {"entry_class": "MyAutoNet", "param_file": "my_model.safetensors", "width": 3}
    if mode == "entry_file":
        (root / "my_model.py").write_text(code)
        cfg["entry_file"] = "my_model.py"
    else:
        (root / "my").mkdir()
        (root / "my" / "__init__.py").write_text("")
        (root / "my" / "model.py").write_text(code)
        cfg["entry_module"] = "my.model"
    (root / "config.json").write_text(json.dumps(cfg))
    save_file({"proj.weight": torch.ones(2, 3), "proj.bias": torch.zeros(2)},
              str(root / "my_model.safetensors"))
    (root / "README.md").write_text(card(root.name))
    return root


def run_cli(argv, monkeypatch, capsys) -> tuple[int, str, str]:
    """Run ``hubloader.cli.main(argv)`` in-process."""
    from hubloader import cli

    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err
