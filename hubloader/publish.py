"""Publishing a model directory: ``push(local_dir, "s3://bucket/prefix")`` or
``push(local_dir, "hf://org/repo[@branch]")``.

Both backends share one policy:

- every file's sha256 is computed locally first;
- files whose remote copy already has that sha256 (and size) are skipped, so re-pushing an
  unchanged model uploads nothing;
- ``config.json`` and then the card (``README.md``) go last, so a reader that finds the card
  finds every file it lists already in place.

S3 (boto3, standard credential chain; endpoint: ``endpoint_url=``, else
``HUBLOADER_S3_ENDPOINT_URL``, else boto3's ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``):
small files are one ``PutObject`` and big ones (``HUBLOADER_MULTIPART_THRESHOLD_MB``) a
multipart upload, both with ``ChecksumAlgorithm=SHA256`` (the server checks every part) and the
whole file's sha256 in the object metadata (``x-amz-meta-sha256``), which is what a later push
compares. The hub (``huggingface_hub.HfApi``): one commit for the data files, then one for
``config.json`` + card; unchanged files are recognised by their LFS sha256 or git blob id.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import constants
from .errors import (AccessDeniedError, ConfigError, NetworkError, RemoteNotFoundError,
                     UnsupportedSourceError)
from .names import parse_model_name

__all__ = ["PushResult", "push", "local_files", "git_blob_sha1"]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_LAST = (constants.CONFIG_NAME, constants.CARD_NAME)  # in this order, after everything else


@dataclass
class PushResult:
    """What a push did.

    Attributes:
        uri: where the model went.
        uploaded: files sent, in upload order (the card last).
        skipped: files already there with the same sha256.
        bytes_uploaded: bytes of the files sent.
    """

    uri: str
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0


@dataclass(frozen=True)
class _LocalFile:
    path: str
    abspath: Path
    size: int
    sha256: str


def local_files(directory: str | os.PathLike) -> list[_LocalFile]:
    """Every file under ``directory`` with its size and sha256, in upload order: data files
    sorted, then ``config.json``, then ``README.md``.

    Raises:
        ConfigError: the directory is missing, empty, or holds a symlink.
    """
    from .saving import file_entries

    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(f"{d} is not a directory; push a model directory (save_pretrained "
                          "writes one)")
    entries = file_entries(d)
    if (d / constants.CARD_NAME).is_file():
        from .files import sha256_file

        card = d / constants.CARD_NAME
        entries.append({"path": constants.CARD_NAME, "size": card.stat().st_size,
                        "sha256": sha256_file(card)})
    if not entries:
        raise ConfigError(f"{d} holds no files to push")
    files = [_LocalFile(e["path"], d / e["path"], e["size"], e["sha256"]) for e in entries]
    rank = {name: i + 1 for i, name in enumerate(_LAST)}
    return sorted(files, key=lambda f: (rank.get(f.path, 0), f.path))


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
        bucket, _, prefix = ref.location.partition("/")
        return _S3Pusher(bucket, prefix.strip("/"), endpoint_url=endpoint_url,
                         progress=progress).push(files)
    from .push_hf import push_hf

    return push_hf(files, ref.location, revision=ref.revision,
                   endpoint=endpoint_url or constants.hf_endpoint(),
                   token=token, commit_message=commit_message, progress=progress)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def git_blob_sha1(path: str | os.PathLike) -> str:
    """The git blob id of a file (``sha1("blob <size>\\0" + content)``), as the hub reports."""
    p = Path(path)
    h = hashlib.sha1(f"blob {p.stat().st_size}\0".encode())
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


class _S3Pusher:
    def __init__(self, bucket: str, prefix: str, *, endpoint_url: str | None, progress: bool):
        self.bucket, self.prefix, self.progress = bucket, prefix, progress
        self.endpoint_url = endpoint_url or constants.s3_endpoint_url()
        self.uri = f"s3://{bucket}/{prefix}".rstrip("/")
        self.s3 = self._client()

    def _client(self):
        try:
            import boto3
            from botocore.config import Config
        except ImportError as err:  # pragma: no cover - boto3 is a dependency
            raise UnsupportedSourceError("pushing to s3:// needs boto3: pip install boto3") from err
        session = boto3.session.Session()
        timeout = constants.network_timeout()
        return session.client(
            "s3", endpoint_url=self.endpoint_url, region_name=session.region_name or "us-east-1",
            config=Config(s3={"addressing_style": "path"}, connect_timeout=timeout,
                          read_timeout=timeout, retries={"max_attempts": 5, "mode": "standard"},
                          max_pool_connections=max(10, constants.max_workers() + 2)))

    def key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def _error(self, err: Exception, what: str) -> Exception:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        where = f"s3://{self.bucket}/{what}"
        if isinstance(err, NoCredentialsError):
            return AccessDeniedError(f"no AWS credentials to write {where}; set "
                                     "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
        if isinstance(err, ClientError):
            code = str(err.response.get("Error", {}).get("Code", ""))
            status = str(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code == "NoSuchBucket":
                return RemoteNotFoundError(f"bucket {self.bucket!r} does not exist; create it "
                                           "first (aws s3 mb s3://" + self.bucket + ")")
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch") or status == "403":
                return AccessDeniedError(f"writing {where} was refused ({code}); use credentials "
                                         "that may write to the bucket")
            return NetworkError(f"S3 error on {where}: {code} (HTTP {status}): {err}")
        if isinstance(err, (BotoCoreError, OSError)):
            return NetworkError(f"could not reach S3 for {where}: {err}; check the endpoint "
                                "(HUBLOADER_S3_ENDPOINT_URL / AWS_ENDPOINT_URL_S3) and network")
        return err

    def _remote_sha256(self, f: _LocalFile) -> str | None:
        from botocore.exceptions import ClientError

        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=self.key(f.path))
        except ClientError as err:
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return None
            raise self._error(err, self.key(f.path)) from err
        except Exception as err:
            raise self._error(err, self.key(f.path)) from err
        if head.get("ContentLength") != f.size:
            return None
        return (head.get("Metadata") or {}).get("sha256")

    def push(self, files: list[_LocalFile]) -> PushResult:
        result = PushResult(self.uri)
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except Exception as err:
            from botocore.exceptions import ClientError

            if isinstance(err, ClientError) and str(err.response.get("Error", {}).get("Code")) in ("404", "NoSuchBucket"):
                err.response["Error"]["Code"] = "NoSuchBucket"
            raise self._error(err, "") from err
        todo = []
        for f in files:
            if self._remote_sha256(f) == f.sha256:
                result.skipped.append(f.path)
            else:
                todo.append(f)
        from .hub.progress import byte_bar

        bar = byte_bar(total=sum(f.size for f in todo), desc=f"push {self.uri}", enabled=self.progress)
        try:
            for f in todo:
                try:
                    if f.size >= constants.multipart_threshold():
                        self._multipart(f, bar)
                    else:
                        self._put(f, bar)
                except (AccessDeniedError, RemoteNotFoundError, NetworkError):
                    raise
                except Exception as err:
                    raise self._error(err, self.key(f.path)) from err
                result.uploaded.append(f.path)
                result.bytes_uploaded += f.size
                logger.info("uploaded %s (%d bytes) to s3://%s/%s", f.path, f.size, self.bucket,
                            self.key(f.path))
        finally:
            bar.close()
        logger.info("pushed %s: %d uploaded, %d unchanged", self.uri, len(result.uploaded),
                    len(result.skipped))
        return result

    def _upload_part(self, fd: int, key: str, upload_id: str, number: int, chunk: int,
                     bar) -> dict:
        """Part ``number`` (from 1) of the open file ``fd``, with its SHA-256; its entry for
        ``complete_multipart_upload``."""
        data = os.pread(fd, chunk, (number - 1) * chunk)
        digest = _b64(hashlib.sha256(data).digest())
        r = self.s3.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                PartNumber=number, Body=data,
                                ChecksumAlgorithm="SHA256", ChecksumSHA256=digest)
        bar.update(len(data))
        return {"PartNumber": number, "ETag": r["ETag"],
                "ChecksumSHA256": r.get("ChecksumSHA256") or digest}

    def _put(self, f: _LocalFile, bar) -> None:
        with open(f.abspath, "rb") as fh:
            data = fh.read()
        self.s3.put_object(Bucket=self.bucket, Key=self.key(f.path), Body=data,
                           ChecksumSHA256=_b64(hashlib.sha256(data).digest()),
                           Metadata={"sha256": f.sha256})
        bar.update(len(data))

    def _multipart(self, f: _LocalFile, bar) -> None:
        """Parts of ``HUBLOADER_MULTIPART_CHUNK_MB`` go up ``HUBLOADER_MAX_WORKERS`` at a time,
        each read with ``pread`` by its own thread (memory: one part per thread) and sent with
        its SHA-256, which the server checks; the upload is aborted if any part fails."""
        from concurrent.futures import ThreadPoolExecutor

        from ._futures import results_or_cancel

        key = self.key(f.path)
        chunk = constants.multipart_chunksize()
        upload = self.s3.create_multipart_upload(Bucket=self.bucket, Key=key,
                                                 ChecksumAlgorithm="SHA256",
                                                 Metadata={"sha256": f.sha256})
        upload_id = upload["UploadId"]
        count = max(1, -(-f.size // chunk))
        try:
            with open(f.abspath, "rb") as fh, ThreadPoolExecutor(
                    max_workers=min(constants.max_workers(), count),
                    thread_name_prefix="hubloader-part") as pool:
                parts = results_or_cancel([
                    pool.submit(self._upload_part, fh.fileno(), key, upload_id, n, chunk, bar)
                    for n in range(1, count + 1)])
            self.s3.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                              MultipartUpload={"Parts": parts})
        except BaseException:
            try:
                self.s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except Exception:  # the original error matters more
                logger.warning("could not abort multipart upload %s of %s", upload_id, key)
            raise
