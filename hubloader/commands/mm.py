"""``hubloader flops NAME_OR_CONFIG --shape 3 224 224``: FLOPs and parameters of an
mmpretrain model, counted as mmengine counts them."""

from __future__ import annotations

import argparse
import json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flops", help="FLOPs (one per multiply-add) and parameters of a "
                                     "model-index name or an mmpretrain config")
    p.add_argument("model", help="a model-index name (resnet18_8xb32_in1k) or a config file")
    p.add_argument("--shape", type=int, nargs="+", default=[3, 224, 224],
                   help="one input's shape without the batch axis (default 3 224 224)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_flops)


def _human(n: float) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n:.3g}P"


def _flops(args) -> int:
    from ..mm import get_flops, get_model

    result = get_flops(get_model(args.model), tuple(args.shape))
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"input shape:  {' x '.join(map(str, args.shape))}")
    print(f"flops:        {_human(result['flops'])} ({result['flops']:,})")
    print(f"params:       {_human(result['params'])} ({result['params']:,})")
    return 0
