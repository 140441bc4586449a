"""``hubloader federate MODEL --data DIR --data DIR ... --rounds N --out DIR``: a local FedAvg
trial on Flower's own SuperLink and SuperNodes (see :mod:`hubloader.automl.federate`)."""

from __future__ import annotations

import json

__all__ = ["register"]


def register(sub) -> None:
    p = sub.add_parser("federate", help="FedAvg a model across local data owners on Flower "
                                        "(needs hubloader[federated])")
    p.add_argument("model", help="card name, model folder or .zip (an AutoModel)")
    p.add_argument("--data", action="append", required=True, metavar="DIR",
                   help="one data owner's image folder (train/<label>/*, optional test/); repeat")
    p.add_argument("--rounds", type=int, default=3, help="FedAvg rounds (default 3)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="gets rounds.json and the aggregated model folder model/")
    p.add_argument("--min-clients", type=int, default=None,
                   help="owners that must answer each round (default: all but one)")
    p.add_argument("--local-epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fraction-evaluate", type=float, default=1.0,
                   help="share of owners evaluating on their test/ each round (0: none)")
    p.add_argument("--round-timeout", type=float, default=300,
                   help="seconds to wait for an owner before a round goes on without it")
    p.add_argument("--recover", action="store_true",
                   help="resume after the last round completed in --out")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_federate)


def _federate(args) -> int:
    from ..automl.federate import federate

    result = federate(args.model, args.data, rounds=args.rounds, out_dir=args.out,
                      min_clients=args.min_clients, local_epochs=args.local_epochs, lr=args.lr,
                      batch_size=args.batch_size, seed=args.seed,
                      fraction_evaluate=args.fraction_evaluate,
                      round_timeout=args.round_timeout, recover=args.recover)
    if args.json:
        print(json.dumps({"model": str(result.model_dir), "rounds": result.rounds}, indent=2))
        return 0
    for r in result.rounds:
        acc = f"{r['accuracy']:.4f}" if r.get("accuracy") is not None else "-"
        print(f"round {r['round']}: {r['clients']} owner(s), {r['samples']} samples, "
              f"train loss {r['train_loss']:.4f}, test accuracy {acc}")
    print(f"aggregated model: {result.model_dir}")
    return 0
