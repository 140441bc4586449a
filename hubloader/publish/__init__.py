"""Publishing a model directory: ``push(local_dir, "s3://bucket/prefix")`` or
``push(local_dir, "hf://org/repo[@branch]")``.

Both backends share one policy:

- every file's sha256 is computed locally first;
- files whose remote copy already has that sha256 (and size) are skipped, so re-pushing an
  unchanged model uploads nothing;
- ``config.json`` and then the card (``README.md``) go last, so a reader that finds the card
  finds every file it lists already in place.

Modules: :mod:`.local` (the files, their digests and order; :class:`PushResult`), :mod:`.s3`
(boto3, standard credential chain; endpoint: ``endpoint_url=``, else
``HUBLOADER_S3_ENDPOINT_URL``, else boto3's ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``) and
:mod:`.hf` (``huggingface_hub.HfApi``).
"""

from __future__ import annotations

import os

from .. import settings
from ..errors import UnsupportedSourceError
from ..names import parse_model_name
from .local import LocalFile, PushResult, local_files

__all__ = ["PushResult", "LocalFile", "push", "local_files"]


def push(local_dir: str | os.PathLike, uri: str, *, progress: bool = True,
         endpoint_url: str | None = None, token: str | None = None,
         commit_message: str | None = None) -> PushResult:
    """Upload a model directory to ``s3://bucket/prefix`` or ``hf://org/repo[@branch]``.

    Args:
        local_dir: the directory (``save_pretrained`` output, with its card).
        uri: the destination.
        progress: tqdm bars on stderr (also off with ``HUBLOADER_DISABLE_PROGRESS_BARS=1``);
            ``hf://`` uploads show huggingface_hub's own bars (``HF_HUB_DISABLE_PROGRESS_BARS``).
        endpoint_url: the S3 endpoint or hub URL (default: env, see the module doc).
        token: hub token (``hf://`` only; default: huggingface_hub's own lookup).
        commit_message: the hub commit message (``hf://`` only).

    Returns:
        A :class:`PushResult`; ``bytes_uploaded == 0`` when nothing changed.

    Raises:
        ConfigError: ``local_dir`` is not a model directory.
        UnsupportedSourceError: a URI that is neither ``s3://`` nor ``hf://``.
        RemoteNotFoundError: the bucket does not exist.
        AccessDeniedError: the credentials may not write there.
        NetworkError: the transfer failed (files already pushed stay; the card is not pushed).

    Example:
        >>> push("out/tiny-bert", "s3://models/tiny-bert")
        PushResult(uri='s3://models/tiny-bert', uploaded=[...], skipped=[], bytes_uploaded=...)
    """
    ref = parse_model_name(uri)
    if ref.kind != "uri" or ref.scheme not in ("s3", "hf"):
        raise UnsupportedSourceError(f"cannot push to {uri!r}: give s3://bucket/prefix or "
                                     "hf://org/repo")
    files = local_files(local_dir)
    if ref.scheme == "s3":
        from .s3 import S3Pusher

        bucket, _, prefix = ref.location.partition("/")
        return S3Pusher(bucket, prefix.strip("/"), endpoint_url=endpoint_url,
                        progress=progress).push(files)
    from .hf import push_hf

    return push_hf(files, ref.location, revision=ref.revision,
                   endpoint=endpoint_url or settings.hf_endpoint(),
                   token=token, commit_message=commit_message, progress=progress)
