"""``hubloader push DIR URI``, ``hubloader pack DIR -o model.zip``,
``hubloader convert SRC DST [--dtype] [--max-shard-size] [--model-type]``."""

from __future__ import annotations

import argparse

from .models import add_entry_arguments

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("push", help="upload a model directory to s3://bucket/prefix or hf://org/repo")
    p.add_argument("directory")
    p.add_argument("uri")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--message", help="commit message (hf:// only)")
    p.set_defaults(func=_push)
    p = sub.add_parser("pack", help="zip a model package directory (checked on the way in)")
    p.add_argument("directory")
    p.add_argument("-o", "--output", required=True, help="the .zip to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing zip")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="run a package's own code: to check it, and to describe it in the card "
                        "written for a package without README.md")
    add_entry_arguments(p)
    p.set_defaults(func=_pack)
    p = sub.add_parser("convert", help="convert a checkpoint (.bin) to safetensors, renaming "
                                       "keys through the model class and sharding")
    p.add_argument("src", help="a model directory or a .bin/.safetensors file")
    p.add_argument("dst", help="the directory to write")
    p.add_argument("--dtype", help="cast floating tensors (float16, bfloat16, float32)")
    p.add_argument("--max-shard-size", help="e.g. 500MB; default one file")
    p.add_argument("--model-type", help="model family when SRC has no config.json model_type")
    p.add_argument("--raw", action="store_true",
                   help="keep the keys as they are (no model class, no renaming)")
    p.add_argument("--mm-config", metavar="NAME_OR_CONFIG",
                   help="SRC is an mmpretrain .pth of this model-index name or config: write "
                        "DST in Hugging Face's layout (ResNet, ViT, Swin)")
    p.add_argument("--to-mmpretrain", action="store_true",
                   help="with --mm-config: SRC is a Hugging Face directory, DST an mmpretrain .pth")
    p.set_defaults(func=_convert)


def _push(args) -> int:
    from ..publish import push

    result = push(args.directory, args.uri, progress=not args.no_progress,
                  commit_message=args.message)
    print(f"pushed {args.directory} to {result.uri}: {len(result.uploaded)} file(s) uploaded "
          f"({result.bytes_uploaded:,} bytes), {len(result.skipped)} unchanged")
    return 0


def _pack(args) -> int:
    import os
    from pathlib import Path

    from ..errors import PackageError
    from ..packages.packaging import pack
    from ..packages.validation import validate

    out = Path(args.output)
    if out.exists() and not args.force:
        raise PackageError(f"{out} exists; remove it or pass --force")
    # validated as the platform receives it (with the card pack writes), before it is final
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.checking.zip")
    try:
        pack(args.directory, tmp, overwrite=True, trust_remote_code=args.trust_remote_code,
             entry=args.entry)
        report = validate(tmp, trust_remote_code=args.trust_remote_code, entry=args.entry,
                          input_shape=args.input_shape)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    for line in report.lines():
        print(line)
    print(f"packed {out}")
    return 0


def _convert(args) -> int:
    from ..tools.convert import convert

    if args.mm_config or args.to_mmpretrain:
        from ..errors import ConfigError
        from ..mm.convert import hf_to_mm, mm_to_hf

        if not args.mm_config:
            raise ConfigError("--to-mmpretrain needs --mm-config NAME_OR_CONFIG")
        out = (hf_to_mm(args.src, args.mm_config, args.dst) if args.to_mmpretrain
               else mm_to_hf(args.mm_config, args.src, args.dst))
        print(f"converted {args.src} into {out}")
        return 0

    result = convert(args.src, args.dst, dtype=args.dtype, max_shard_size=args.max_shard_size,
                     model_type=args.model_type, raw=args.raw)
    print(f"converted {result.num_tensors} tensors ({result.num_bytes:,} bytes) into "
          f"{result.directory}: {', '.join(result.files)}")
    return 0
