"""``hubloader ls``, ``hubloader info NAME``, ``hubloader validate PATH``."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "validate_path"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="list models with a card")
    p.add_argument("--task", help="only models serving this task (aliases work)")
    p.add_argument("--pattern", help="shell-style name pattern, e.g. 'bert*'")
    p.set_defaults(func=_ls)
    p = sub.add_parser("info", help="show a model's card")
    p.add_argument("name")
    p.set_defaults(func=_info)
    p = sub.add_parser("validate", help="check a model directory or a card file")
    p.add_argument("path")
    p.set_defaults(func=_validate)


def _ls(args) -> int:
    from ..cards import list_models, model_info
    from ..registry import resolve_task

    if args.task:
        resolve_task(args.task)  # unknown task: a clear error
    names = list_models(task=args.task, pattern=args.pattern)
    width = max((len(n) for n in names), default=4)
    for name in names:
        card = model_info(name)
        print(f"{name:<{width}}  {card.architecture:<8}  {', '.join(card.tasks)}")
    return 0


def _info(args) -> int:
    from ..cards import model_info

    card = model_info(args.name)
    print(f"name:         {card.name}")
    print(f"display-name: {card.display_name}")
    print(f"architecture: {card.architecture}")
    print(f"tasks:        {', '.join(card.tasks)}")
    print(f"license:      {card.license}")
    print(f"author:       {card.author}")
    print(f"source:       {card.source or '-'}" + (f" @ {card.revision}" if card.revision else ""))
    for f in card.files:
        size = f"{f.size:,} B" if f.size is not None else "size ?"
        print(f"file:         {f.path}  {size}  {f.sha256 or 'sha256 ?'}")
    if card.tags:
        print(f"tags:         {', '.join(card.tags)}")
    return 0


def validate_path(path: str | Path) -> list[str]:
    """Check a card file or a model directory; return the lines of a short report.

    Raises:
        HubLoaderError: the first problem found.
    """
    from .. import constants
    from ..cards import load_card
    from ..modeling import BaseModel

    p = Path(path)
    report = []
    if p.is_file():
        card = load_card(p)
        return [f"card ok: {card.name} ({card.architecture}; tasks {', '.join(card.tasks)})"]
    if not p.is_dir():
        from ..errors import ModelNotFoundError

        raise ModelNotFoundError(f"{p} is neither a model directory nor a card file")
    if (p / constants.CARD_NAME).is_file():
        card = load_card(p)
        report.append(f"card ok: {card.name}")
    model = BaseModel.from_pretrain(str(p), strict=True)
    r = model.load_report
    report.append(f"config ok: {type(model.config).__name__} (model_type {model.config.model_type})")
    report.append(f"weights ok: {r.num_tensors} tensors, {r.num_bytes:,} bytes from "
                  f"{', '.join(r.files)} into {type(model).__name__} (strict)")
    return report


def _validate(args) -> int:
    for line in validate_path(args.path):
        print(line)
    print("valid")
    return 0
