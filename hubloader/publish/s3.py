"""Push to ``s3://bucket/prefix``: small files are one ``PutObject``, big ones
(``HUBLOADER_MULTIPART_THRESHOLD_MB``) a multipart upload through s3transfer, both with
``ChecksumAlgorithm=SHA256`` (the server checks every part) and the whole file's sha256 in the
object metadata (``x-amz-meta-sha256``), which is what a later push compares to skip it.
The client and the error map are the ones downloads use (:mod:`hubloader.hub.sources.s3`).
"""

from __future__ import annotations

import base64
import hashlib
import logging

from .. import settings
from ..errors import AccessDeniedError, NetworkError, RemoteNotFoundError
from ..hub.progress import byte_bar
from ..hub.sources.s3 import make_client, translate_error
from .local import LocalFile, PushResult

__all__ = ["S3Pusher"]

logger = logging.getLogger(__name__)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


class S3Pusher:
    """Uploads to ``s3://bucket/prefix`` through the client of :mod:`hubloader.hub.sources.s3`.

    Args:
        bucket, prefix: the destination.
        endpoint_url: the server (default: as for downloads).
        progress: a tqdm bar on stderr.
    """

    def __init__(self, bucket: str, prefix: str, *, endpoint_url: str | None, progress: bool):
        self.bucket, self.prefix, self.progress = bucket, prefix, progress
        self.uri = f"s3://{bucket}/{prefix}".rstrip("/")
        # writes are retried more than reads: a failed part costs the whole push
        self.s3 = make_client(endpoint_url=endpoint_url, attempts=5, unsigned_if_anonymous=False)

    def key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def _error(self, err: Exception, what: str) -> Exception:
        return translate_error(err, f"s3://{self.bucket}/{what}", writing=True)

    def _remote_sha256(self, f: LocalFile) -> str | None:
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

    def push(self, files: list[LocalFile]) -> PushResult:
        result = PushResult(self.uri)
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except Exception as err:
            raise self._error(err, "") from err
        todo = []
        for f in files:
            if self._remote_sha256(f) == f.sha256:
                result.skipped.append(f.path)
            else:
                todo.append(f)

        bar = byte_bar(total=sum(f.size for f in todo), desc=f"push {self.uri}", enabled=self.progress)
        try:
            for f in todo:
                try:
                    if f.size >= settings.multipart_threshold():
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

    def _put(self, f: LocalFile, bar) -> None:
        with open(f.abspath, "rb") as fh:
            data = fh.read()
        self.s3.put_object(Bucket=self.bucket, Key=self.key(f.path), Body=data,
                           ChecksumSHA256=_b64(hashlib.sha256(data).digest()),
                           Metadata={"sha256": f.sha256})
        bar.update(len(data))

    def _multipart(self, f: LocalFile, bar) -> None:
        """Through s3transfer (boto3's uploader): parts of ``HUBLOADER_MULTIPART_CHUNK_MB`` go
        up ``HUBLOADER_MAX_WORKERS`` at a time, each with its SHA-256, which the server checks;
        s3transfer aborts the upload if any part fails. Retries are botocore's alone."""
        from s3transfer.manager import TransferConfig, TransferManager
        from s3transfer.subscribers import BaseSubscriber

        class _Progress(BaseSubscriber):
            def on_progress(self, future, bytes_transferred, **kwargs):  # noqa: ARG002
                bar.update(bytes_transferred)

        config = TransferConfig(multipart_threshold=settings.multipart_threshold(),
                                multipart_chunksize=settings.multipart_chunksize(),
                                max_request_concurrency=settings.max_workers())
        with TransferManager(self.s3, config) as manager:
            manager.upload(str(f.abspath), self.bucket, self.key(f.path),
                           extra_args={"ChecksumAlgorithm": "SHA256",
                                       "Metadata": {"sha256": f.sha256}},
                           subscribers=[_Progress()]).result()
