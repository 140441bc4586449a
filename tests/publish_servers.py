"""A real S3 server for the push tests: SeaweedFS (``weed server`` with master, volume, filer
and S3 gateway) bound to 127.0.0.1 on free ports, telemetry off, data in a temp dir, one
identity. Whoever starts it stops it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WEED = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
ACCESS_KEY, SECRET_KEY = "pushtest", "pushtestsecret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SeaweedS3:
    def __init__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="hubloader-push-weed-"))
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = None

    def start(self) -> "SeaweedS3":
        (self.tmp / "data").mkdir()
        (self.tmp / "s3.json").write_text(json.dumps({"identities": [{
            "name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        p = {n: free_port() for n in ("master", "volume", "filer", "gm", "gv", "gf", "gs")}
        cmd = [WEED, "server", f"-dir={self.tmp / 'data'}", "-ip=127.0.0.1",
               "-ip.bind=127.0.0.1", f"-master.port={p['master']}",
               f"-master.port.grpc={p['gm']}", f"-volume.port={p['volume']}",
               f"-volume.port.grpc={p['gv']}", "-filer", f"-filer.port={p['filer']}",
               f"-filer.port.grpc={p['gf']}", "-s3", f"-s3.port={self.port}",
               f"-s3.port.grpc={p['gs']}", "-s3.port.iceberg=0", "-s3.port.lance=0",
               f"-s3.config={self.tmp / 's3.json'}", "-master.telemetry=false",
               "-volume.max=20", "-master.volumeSizeLimitMB=64"]
        self.log = open(self.tmp / "weed.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=self.tmp, start_new_session=True)
        deadline = time.monotonic() + 90
        while True:
            try:
                self.client().list_buckets()
                return self
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.tmp / "weed.log").read_text(errors="replace")[-2000:]
                    self.stop()
                    raise RuntimeError(f"SeaweedFS did not start:\n{log}")
                time.sleep(0.3)

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}))

    def env(self) -> dict[str, str]:
        """What a user sets to point boto3's standard chain at this server."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # weed often ignores SIGTERM for a long while
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: our child only
                self.proc.wait(timeout=10)
        if self.log is not None:
            self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
