"""``hubloader download NAME`` and ``hubloader cache ls|verify|prune|rm``."""

from __future__ import annotations

import argparse
import json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="fetch a model into the cache and print its directory")
    p.add_argument("name", help="card name, s3:// / hf:// / file:// URI")
    p.add_argument("--revision", help="branch, tag or commit (hf://); a label elsewhere")
    p.add_argument("--download-path", help="put the files in DOWNLOAD_PATH/NAME/ instead")
    p.add_argument("--include", action="append", metavar="PATTERN",
                   help="only files matching this shell pattern (repeatable)")
    p.add_argument("--offline", action="store_true", help="use the cache only")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.set_defaults(func=_download)

    p = sub.add_parser("cache", help="inspect and clean the download cache")
    csub = p.add_subparsers(dest="cache_command", metavar="ACTION")
    csub.required = True
    c = csub.add_parser("ls", help="list cached snapshots and where their files came from")
    c.add_argument("--json", action="store_true",
                   help="print JSON: every snapshot with its files (path, size, sha256, origin)")
    c.set_defaults(func=_ls)
    c = csub.add_parser("verify", help="re-hash cached files against their manifests")
    c.add_argument("name", nargs="?", help="only this model (card name, URI or cache key)")
    c.set_defaults(func=_verify)
    c = csub.add_parser("prune", help="remove stale partial downloads, incomplete and "
                                      "superseded snapshots")
    c.add_argument("--min-age", type=float, default=3600.0,
                   help="only partial/incomplete items older than this many seconds (default 3600)")
    c.add_argument("--dry-run", action="store_true", help="show what would go")
    c.set_defaults(func=_prune)
    c = csub.add_parser("rm", help="remove one model from the cache")
    c.add_argument("name", help="card name, URI or cache key")
    c.set_defaults(func=_rm)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def _download(args) -> int:
    from ..hub import download
    from ..hub.fanout import job_group

    with job_group():  # under torchrun: once per node, and once for all nodes
        path = download(args.name, revision=args.revision, download_path=args.download_path,
                        allow_patterns=args.include, offline=True if args.offline else None,
                        progress=not args.quiet)
    print(path)
    return 0


def _ls(args) -> int:
    from ..hub.cache import cache_root
    from ..hub.cache_admin import cache_usage, scan_cache, snapshot_files

    snaps = scan_cache()
    if args.json:
        usage = cache_usage()
        print(json.dumps({"root": str(cache_root()), "snapshots": [
            {"uri": s.uri, "revision": s.revision, "refs": list(s.refs), "path": str(s.path),
             "complete": s.complete, "size": s.size, "files": snapshot_files(s)}
            for s in snaps], "on_disk": usage.on_disk, "shared": usage.shared}, indent=2))
        return 0
    if not snaps:
        print(f"cache {cache_root()} is empty")
        return 0
    for s in snaps:
        state = "complete" if s.complete else "partial"
        refs = f"  ({', '.join(s.refs)})" if s.refs else ""
        print(f"{s.uri}  {s.revision[:12]}{refs}  {s.files} files  {_human(s.size)}  {state}  {s.path}")
        origins: dict[str, int] = {}
        for f in snapshot_files(s):
            origins[f["origin"]] = origins.get(f["origin"], 0) + 1
        print("    from " + ", ".join(f"{o} ({n} file{'s' if n > 1 else ''})"
                                     for o, n in sorted(origins.items())))
    usage = cache_usage()
    print(f"{len(snaps)} snapshot(s): {_human(usage.on_disk)} on disk "
          f"({_human(usage.files)} of files, {_human(usage.shared)} shared between snapshots)")
    return 0


def _verify(args) -> int:
    from ..hub.cache_admin import unverified_files, verify_cache

    checked, problems = verify_cache(name=args.name)
    for p in problems:
        print(f"BAD {p.kind}: {p.path} (expected {p.expected}, got {p.actual})")
    unverified = unverified_files(name=args.name)
    for path in unverified:
        print(f"UNVERIFIED: {path} (its source stated no digest to check it against)")
    print(f"{checked} file(s) checked, {len(problems)} problem(s)"
          + (f", {len(unverified)} never verified against their source" if unverified else "")
          + ("; 'hubloader cache rm NAME' then download again" if problems else ""))
    return 1 if problems else 0


def _prune(args) -> int:
    from ..hub.cache_admin import prune_cache

    report = prune_cache(min_age=args.min_age, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path in report.removed:
        print(f"{verb} {path}")
    print(f"{verb} {len(report.removed)} item(s), {_human(report.freed)}")
    return 0


def _rm(args) -> int:
    from ..hub.cache_admin import remove_from_cache

    folder, size = remove_from_cache(args.name)
    print(f"removed {folder} ({_human(size)})")
    return 0
