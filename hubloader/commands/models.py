"""``hubloader ls``, ``hubloader info NAME``, ``hubloader validate PATH``."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..catalogue.cards import list_models, model_info
from ..catalogue.model_index import ModelIndexEntry

__all__ = ["register", "validate_path"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="list models with a card or a model-index entry")
    p.add_argument("--task", help="only models serving this task (aliases work)")
    p.add_argument("--pattern", help="shell-style name pattern, e.g. 'bert*'")
    p.add_argument("--json", action="store_true", help="print JSON (a list of cards)")
    p.set_defaults(func=_ls)
    p = sub.add_parser("info", help="show a model's card")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print the card as JSON")
    p.set_defaults(func=_info)
    p = sub.add_parser("validate", help="check a model directory, a .zip package or a card file")
    p.add_argument("path")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="also run a package's own code to build the model, load its weights and "
                        "check its downstream interface on one random input")
    add_entry_arguments(p)
    p.set_defaults(func=_validate)


def add_entry_arguments(p: argparse.ArgumentParser) -> None:
    """``--entry`` and ``--input-shape``, shared by ``validate`` and ``pack``."""
    p.add_argument("--entry", help="the hubconf.py entry to build (default BIG_PRETRAINED_MODEL)")
    p.add_argument("--input-shape", type=_shape,
                   help="one input sample's shape for the interface check, e.g. 3,224,224 or 16")


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError:
        dims = ()
    if not dims or min(dims) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape; write e.g. 3,224,224")
    return dims


def _ls(args) -> int:
    from ..load.registry import resolve_task

    if args.task:
        resolve_task(args.task)  # unknown task: a clear error
    names = list_models(task=args.task, pattern=args.pattern)
    if args.json:
        print(json.dumps([card_json(model_info(n)) for n in names], indent=2))
        return 0
    width = max((len(n) for n in names), default=4)
    for name in names:
        card = model_info(name)
        print(f"{name:<{width}}  {card.architecture:<8}  {', '.join(card.tasks)}")
    return 0


def card_json(card) -> dict:
    """A card (or a model-index entry) as plain JSON values (paths as strings)."""
    data = dataclasses.asdict(card)
    for key in ("path", "config", "index"):
        if key in data:
            data[key] = str(data[key]) if data[key] else None
    return data


def _info(args) -> int:
    card = model_info(args.name)
    if isinstance(card, ModelIndexEntry):
        return _index_info(card, args.json)
    if args.json:
        print(json.dumps(card_json(card), indent=2))
        return 0
    print(f"name:         {card.name}")
    print(f"display-name: {card.display_name}")
    print(f"architecture: {card.architecture or '- (config.json model_type)'}")
    print(f"tasks:        {', '.join(card.tasks)}")
    print(f"license:      {card.license}")
    print(f"author:       {card.author}")
    print(f"source:       {card.source or '-'}" + (f" @ {card.revision}" if card.revision else ""))
    for f in card.files:
        size = f"{f.size:,} B" if f.size is not None else "size ?"
        print(f"file:         {f.path}  {size}  {f.sha256 or 'sha256 ?'}")
    if card.tags:
        print(f"tags:         {', '.join(card.tags)}")
    if card.is_federated:
        print("is-federated: true")
    return 0


def _index_info(entry: ModelIndexEntry, as_json: bool) -> int:
    if as_json:
        print(json.dumps(card_json(entry), indent=2, default=str))
        return 0
    print(f"name:         {entry.name}")
    print(f"collection:   {entry.collection}")
    if entry.paper:
        print(f"paper:        {entry.paper.get('Title', '')} {entry.paper.get('URL', '')}".rstrip())
    print(f"config:       {entry.config}")
    print(f"weights:      {entry.weights or '-'}")
    for r in entry.results:
        metrics = ", ".join(f"{k} {v}" for k, v in (r.get("Metrics") or {}).items())
        print(f"result:       {r.get('Dataset', '?')} ({r.get('Task', '?')}): {metrics}")
    for key in ("FLOPs", "Parameters", "Training Data"):
        if key in entry.metadata:
            print(f"{key.lower() + ':':<13} {entry.metadata[key]}")
    if entry.converted_from:
        print(f"converted:    {entry.converted_from.get('Weights', '')} "
              f"{entry.converted_from.get('Code', '')}".rstrip())
    return 0


def validate_path(path: str | Path, *, trust_remote_code: bool | str = False,
                  entry: str | None = None,
                  input_shape: tuple[int, ...] | None = None) -> list[str]:
    """Check a card file, a model directory or a ``.zip`` package; return the report's lines
    (see :func:`hubloader.packages.validation.validate`).

    Raises:
        HubLoaderError: the first problem found.
    """
    from ..packages.validation import validate

    return validate(path, trust_remote_code=trust_remote_code, entry=entry,
                    input_shape=input_shape).lines()


def _validate(args) -> int:
    for line in validate_path(args.path, trust_remote_code=args.trust_remote_code,
                              entry=args.entry, input_shape=args.input_shape):
        print(line)
    print("valid")
    return 0
