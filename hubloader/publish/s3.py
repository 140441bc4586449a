"""Push to ``s3://bucket/prefix``: small files are one ``PutObject``, big ones
(``HUBLOADER_MULTIPART_THRESHOLD_MB``) a multipart upload, both with
``ChecksumAlgorithm=SHA256`` (the server checks every part) and the whole file's sha256 in the
object metadata (``x-amz-meta-sha256``), which is what a later push compares to skip it.
The client and the error map are the ones downloads use (:mod:`hubloader.hub.sources.s3`).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor

from .. import settings
from .._futures import results_or_cancel
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

    def _put(self, f: LocalFile, bar) -> None:
        with open(f.abspath, "rb") as fh:
            data = fh.read()
        self.s3.put_object(Bucket=self.bucket, Key=self.key(f.path), Body=data,
                           ChecksumSHA256=_b64(hashlib.sha256(data).digest()),
                           Metadata={"sha256": f.sha256})
        bar.update(len(data))

    def _multipart(self, f: LocalFile, bar) -> None:
        """Parts of ``HUBLOADER_MULTIPART_CHUNK_MB`` go up ``HUBLOADER_MAX_WORKERS`` at a time,
        each read with ``pread`` by its own thread (memory: one part per thread) and sent with
        its SHA-256, which the server checks; the upload is aborted if any part fails."""
        key = self.key(f.path)
        chunk = settings.multipart_chunksize()
        upload = self.s3.create_multipart_upload(Bucket=self.bucket, Key=key,
                                                 ChecksumAlgorithm="SHA256",
                                                 Metadata={"sha256": f.sha256})
        upload_id = upload["UploadId"]
        count = max(1, -(-f.size // chunk))
        try:
            with open(f.abspath, "rb") as fh, ThreadPoolExecutor(
                    max_workers=min(settings.max_workers(), count),
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
