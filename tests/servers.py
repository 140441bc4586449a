"""Real servers on 127.0.0.1 for the hub tests: SeaweedFS (S3), a fault-injecting TCP proxy,
and a minimal Hugging Face hub-protocol server. Every server is stopped by whoever started it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

WEED = shutil.which("weed") or str(Path(os.sys.executable).with_name("weed"))
ACCESS_KEY, SECRET_KEY = "hubtest", "hubtestsecret"
#: an identity that may list buckets' objects but not read them (access-denied tests)
LIST_ONLY_KEY, LIST_ONLY_SECRET = "hublister", "hublistersecret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- SeaweedFS ----------------------------------------------------------------------------
class SeaweedFS:
    """``weed server`` with master, volume, filer and S3 gateway bound to 127.0.0.1, telemetry
    off, data in a temp dir, an admin identity (``ACCESS_KEY``/``SECRET_KEY``) and one that
    may only list (``LIST_ONLY_KEY``/``LIST_ONLY_SECRET``)."""

    def __init__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="hubtest-weed-"))
        self.s3_port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.s3_port}"
        self.proc = None

    def start(self) -> "SeaweedFS":
        (self.tmp / "data").mkdir()
        config = {"identities": [{"name": "admin", "credentials": [
            {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
            {"name": "lister", "credentials": [
                {"accessKey": LIST_ONLY_KEY, "secretKey": LIST_ONLY_SECRET}],
             "actions": ["List"]}]}
        (self.tmp / "s3.json").write_text(json.dumps(config))
        ports = {name: free_port() for name in ("master", "volume", "filer")}
        grpc = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        cmd = [WEED, "server", f"-dir={self.tmp / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-master.port={ports['master']}", f"-master.port.grpc={grpc['master']}",
               f"-volume.port={ports['volume']}", f"-volume.port.grpc={grpc['volume']}",
               "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={grpc['filer']}",
               "-s3", f"-s3.port={self.s3_port}", f"-s3.port.grpc={grpc['s3']}",
               "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={self.tmp / 's3.json'}",
               "-master.telemetry=false", "-volume.max=200", "-master.volumeSizeLimitMB=128"]
        self.log = open(self.tmp / "weed.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=self.tmp, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client().create_bucket(Bucket="hubtest-ready")
                return self
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("SeaweedFS did not start; see " + str(self.tmp / "weed.log"))
                time.sleep(0.3)

    def client(self, endpoint: str | None = None):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=endpoint or self.endpoint,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"},
                                          retries={"max_attempts": 3}))

    def env(self) -> dict[str, str]:
        """What a user sets to point boto3's standard chain at this server."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}

    def ensure_bucket(self, bucket: str):
        """Create ``bucket`` unless it exists; return a client."""
        s3 = self.client()
        try:
            s3.create_bucket(Bucket=bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        except Exception as err:  # SeaweedFS answers BucketAlreadyExists for an existing one
            if "BucketAlready" not in str(err):
                raise
        return s3

    def upload_dir(self, bucket: str, prefix: str, folder: Path) -> None:
        s3 = self.ensure_bucket(bucket)
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                key = prefix.rstrip("/") + "/" + path.relative_to(folder).as_posix()
                s3.upload_file(str(path), bucket, key)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # weed often ignores SIGTERM for a long while
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: our child only
                self.proc.wait(timeout=10)
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


_SEAWEED: SeaweedFS | None = None


def seaweed_singleton() -> SeaweedFS:
    """One SeaweedFS per test session (started on first use)."""
    global _SEAWEED
    if _SEAWEED is None:
        _SEAWEED = SeaweedFS().start()
    return _SEAWEED


def stop_seaweed_singleton() -> None:
    global _SEAWEED
    if _SEAWEED is not None:
        _SEAWEED.stop()
        _SEAWEED = None


# -- fault-injecting TCP proxy -----------------------------------------------------------
class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of ``upstream`` that counts the bytes the server
    sends, records what clients send (request heads), and can throttle, cut connections
    after N downstream bytes, or flip one byte at a downstream offset; per request whose
    line contains a path: answer an S3 error (5xx) itself, stall the response (a read
    timeout for the client), reset the connection (RST) after N bytes, or flip the byte at
    offset N of the response (headers included: a tamperer in the path). Per-request faults
    hit GETs only (the transfers), never the HEAD or listing around them, unless
    ``fault_methods`` says otherwise (``("PUT",)`` for uploads; a failed request's body is
    read and dropped, never forwarded).

    All knobs are plain attributes; set them between transfers.
    """

    def __init__(self, upstream_port: int):
        self.upstream = ("127.0.0.1", upstream_port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.reset()
        self.throttle_bps: float | None = None
        self.cut_after: int | None = None
        self.cut_times = 0
        self.corrupt_at: int | None = None
        self.corrupt_times = 0
        # per response, for requests whose head contains the path: (path, after bytes, times)
        self.stall: tuple[str, int, int] | None = None   # hold the response (read timeout)
        self.reset_conn: tuple[str, int, int] | None = None  # TCP RST mid-response
        self.fail: tuple[str, int, int] | None = None    # answer an S3 error, never forwarded
        self.flip: tuple[str, int, int] | None = None    # flip one byte at this response offset
        self.injected: list[str] = []                     # what was injected, in order
        self.fault_methods: tuple[str, ...] = ("GET",)    # requests the knobs above may hit
        self._rst: set[int] = set()
        self._stop = False
        self._conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def reset(self) -> None:
        with self.lock:
            self.down_bytes = 0
            self.requests: list[str] = []
            self.connections = 0

    def range_headers(self) -> list[str]:
        return [m for r in self.requests for m in re.findall(r"(?im)^range:\s*(bytes=\S+)", r)]

    def get_lines(self) -> list[str]:
        return [m for r in self.requests for m in re.findall(r"(?m)^GET \S+", r)]

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections += 1
                self._conns += [client, upstream]
            log = []
            threading.Thread(target=self._up, args=(client, upstream, log), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, log), daemon=True).start()

    def _take(self, knob: str, head: str):
        """Consume one use of a per-request knob if ``head`` matches it (caller holds the lock)."""
        spec = getattr(self, knob)
        line = head.split("\r\n", 1)[0]
        if (spec is None or spec[2] <= 0 or line.split(" ", 1)[0] not in self.fault_methods
                or spec[0] not in line):
            return None
        setattr(self, knob, (spec[0], spec[1], spec[2] - 1))
        self.injected.append(f"{knob} {head.split(chr(13), 1)[0]}")
        return spec[1]

    def _up(self, client, upstream, log) -> None:
        try:
            while data := client.recv(65536):
                text = data[:8192].decode("latin-1")
                if re.match(r"^[A-Z]+ \S+ HTTP/1", text):
                    head = text.split("\r\n\r\n", 1)[0]
                    with self.lock:
                        self.requests.append(head)
                        status = self._take("fail", head)
                        log.append(head)
                    if status is not None:  # swallow the request's body, never forward it
                        m = re.search(r"(?im)^content-length:\s*(\d+)", head)
                        left = (int(m.group(1)) if m else 0) - (len(data) - len(head) - 4)
                        while left > 0 and (chunk := client.recv(min(left, 65536))):
                            left -= len(chunk)
                        client.sendall(_s3_error(status))
                        continue
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _close(upstream)
            if id(client) not in self._rst:  # a reset connection must not send a FIN
                _close(client)

    def _down(self, upstream, client, log) -> None:
        sent = 0
        seen, since, stall_at, reset_at, flip_at = 0, 0, None, None, None
        cut = corrupt = None
        with self.lock:
            if self.cut_after is not None and self.cut_times > 0:
                cut = self.cut_after
                self.cut_times -= 1
            if self.corrupt_at is not None and self.corrupt_times > 0:
                corrupt = self.corrupt_at
                self.corrupt_times -= 1
        started = time.monotonic()
        try:
            while data := upstream.recv(65536):
                if len(log) != seen:  # the response to a new request begins
                    with self.lock:
                        seen, since = len(log), 0
                        stall_at = self._take("stall", log[-1])
                        reset_at = self._take("reset_conn", log[-1])
                        flip_at = self._take("flip", log[-1])
                if reset_at is not None and since + len(data) >= reset_at:
                    client.sendall(data[: reset_at - since])
                    with self.lock:
                        self._rst.add(id(client))
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      struct.pack("ii", 1, 0))  # close = RST, not FIN
                    client.shutdown(socket.SHUT_RD)  # wakes _up's recv; sends nothing
                    client.close()
                    return
                if stall_at is not None and since + len(data) >= stall_at:
                    client.sendall(data[: stall_at - since])
                    deadline = time.monotonic() + 30  # bounded: the client times out first
                    while not self._stop and time.monotonic() < deadline:
                        time.sleep(0.05)
                    return
                if flip_at is not None and since <= flip_at < since + len(data):
                    i = flip_at - since
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
                since += len(data)
                if cut is not None and sent + len(data) >= cut:
                    data = data[: max(0, cut - sent)]
                    client.sendall(data)
                    with self.lock:
                        self.down_bytes += len(data)
                    return
                if corrupt is not None and sent <= corrupt < sent + len(data):
                    i = corrupt - sent
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
                client.sendall(data)
                sent += len(data)
                with self.lock:
                    self.down_bytes += len(data)
                if self.throttle_bps:
                    ahead = sent / self.throttle_bps - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(min(ahead, 1.0))
        except OSError:
            pass
        finally:
            _close(client)
            _close(upstream)

    def close(self) -> None:
        self._stop = True
        _close(self.sock)
        with self.lock:
            for c in self._conns:
                _close(c)
        self.thread.join(timeout=5)


_REASONS = {500: ("Internal Server Error", "InternalError"), 503: ("Slow Down", "SlowDown"),
            403: ("Forbidden", "AccessDenied")}


def _s3_error(status: int) -> bytes:
    reason, code = _REASONS.get(status, ("Error", "InternalError"))
    body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>injected by the test proxy</Message></Error>").encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _close(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


# -- TLS in front of a plain server ---------------------------------------------------------
def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by itself, and its key (PEM files in ``folder``):
    a client trusts it only when given it as a CA bundle."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hubloader test server")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "tls-cert.pem", folder / "tls-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class TLSProxy:
    """HTTPS on 127.0.0.1 in front of a plain-HTTP server (SeaweedFS), with a self-signed
    certificate (``self.cert``). One thread per connection relays both ways with ``select``
    (an SSL socket must not be read and written from two threads at once)."""

    def __init__(self, upstream_port: int, folder: Path):
        import ssl

        self.cert, key = self_signed_cert(folder)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(self.cert, key)
        self.upstream = ("127.0.0.1", upstream_port)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"https://127.0.0.1:{self.sock.getsockname()[1]}"
        self.handshakes_failed = 0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(client)
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client) -> None:
        import select
        import ssl

        upstream = None
        try:
            client.settimeout(10)
            try:
                tls = self.ctx.wrap_socket(client, server_side=True)
            except (ssl.SSLError, OSError):
                with self._lock:
                    self.handshakes_failed += 1
                return
            upstream = socket.create_connection(self.upstream, timeout=10)
            with self._lock:
                self._conns.append(upstream)
            while True:
                ready = [tls] if tls.pending() else select.select([tls, upstream], [], [], 10)[0]
                if not ready:
                    return
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    (upstream if src is tls else tls).sendall(data)
        except OSError:
            pass
        finally:
            _close(client)
            if upstream is not None:
                _close(upstream)

    def close(self) -> None:
        _close(self.sock)
        with self._lock:
            for c in self._conns:
                _close(c)
        self.thread.join(timeout=5)


# -- a minimal Hugging Face hub-protocol server -------------------------------------------
def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Listener(ThreadingHTTPServer):
    """A threaded HTTP server whose listen queue takes a parallel client's connections at
    once: with socketserver's default of 5, the sixth simultaneous connect is dropped and
    the client's kernel retries it a second later, a stall no real hub has."""

    request_queue_size = 128


class HubServer:
    """Serves ``repos = {repo_id: {"refs": {name: commit}, "commits": {commit: {path: bytes}}}}``
    through the endpoints huggingface_hub uses:

    * ``GET /api/models/{repo}/revision/{rev}[?blobs=true]`` -> ``sha`` and ``siblings``;
    * ``GET|HEAD /{repo}/resolve/{rev}/{path}`` with ``ETag``, ``X-Repo-Commit``,
      ``X-Linked-Etag``/``X-Linked-Size`` (LFS files, i.e. ``*.safetensors``), ``Range``;
    * 404 with ``X-Error-Code: RepoNotFound | RevisionNotFound | EntryNotFound``;

    and, for ``HfApi`` pushes over the LFS protocol (``HF_HUB_DISABLE_XET=1``; Xet storage is
    not served):

    * ``POST /api/repos/create`` (409 when it exists), ``POST /api/models/{repo}/branch/{b}``;
    * ``GET /api/models/{repo}/tree/{rev}`` (``oid`` = git blob id, ``lfs.oid`` = sha256);
    * ``POST /api/validate-yaml``, ``POST /api/models/{repo}/preupload/{rev}``;
    * ``POST /{repo}.git/info/lfs/objects/batch`` -> basic transfer, ``PUT /lfs/{oid}``
      (the body's sha256 must equal the oid);
    * ``POST /api/models/{repo}/commit/{rev}`` (NDJSON ``header``, ``file``, ``lfsFile``).

    ``commits_made`` lists each pushed commit's paths; ``bytes_received`` counts upload bytes.

    ``storage_host = "localhost"`` redirects every ``/resolve/`` GET to that host name (the
    same server under another name, as a hub sends LFS files to its storage), where the
    ``Authorization`` header of each request is kept in ``storage_auth`` (and the hub's, of
    the GETs it redirected, in ``hub_auth``).

    ``presigned_5xx = True`` redirects every ``/resolve/`` GET to a presigned-looking URL on
    the same server (``X-Amz-Credential``, ``X-Amz-Signature`` = :attr:`PRESIGNED_SECRETS`)
    that answers 503 and echoes its own URL, as a storage backend having a bad day would.
    """

    PRESIGNED_SECRETS = ("AKIAHUBTESTPRESIGN7Q", "9f2c" * 16)

    LFS_SUFFIXES = (".safetensors", ".bin")

    def __init__(self):
        self.repos: dict[str, dict] = {}
        self.hits: list[str] = []
        self.user_agents: list[str] = []  # of the GET/HEAD requests, in order
        self.lfs: dict[str, bytes] = {}  # sha256 -> bytes uploaded over LFS
        self.commits_made: list[list[str]] = []
        self.bytes_received = 0
        self._metas: dict[tuple[str, int], tuple[bytes, dict]] = {}
        self.lock = threading.Lock()
        self.presigned_5xx = False
        self.storage_host: str | None = None
        self.storage_auth: list[str | None] = []  # Authorization seen at the storage host
        self.hub_auth: list[str | None] = []  # ... and at the hub, on the redirected GETs
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                server._handle(self, head=True)

            def do_GET(self):
                server._handle(self, head=False)

            def do_POST(self):
                server._handle_write(self)

            def do_PUT(self):
                server._handle_write(self)

        self.httpd = _Listener(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add_commit(self, repo: str, files: dict[str, bytes], *, branch: str = "main") -> str:
        entry = self.repos.setdefault(repo, {"refs": {}, "commits": {}})
        commit = hashlib.sha1(repr(sorted((k, hashlib.sha256(v).hexdigest())
                                          for k, v in files.items())).encode()
                              + repo.encode()).hexdigest()
        entry["commits"][commit] = dict(files)
        entry["refs"][branch] = commit
        return commit

    def _resolve(self, repo: str, rev: str):
        entry = self.repos.get(repo)
        if entry is None:
            return None, "RepoNotFound"
        commit = entry["refs"].get(rev, rev if rev in entry["commits"] else None)
        if commit is None:
            return None, "RevisionNotFound"
        return commit, None

    def _meta(self, path: str, data: bytes) -> dict:
        # every request asks for its file's digests: hash each (immutable) body once, as a hub
        # stores them, or the server's hashing would dominate what the benchmarks measure
        key = (path, id(data))
        cached = self._metas.get(key)
        if cached is not None and cached[0] is data:
            return cached[1]
        sib = self._digests(path, data)
        self._metas[key] = (data, sib)
        return sib

    def _digests(self, path: str, data: bytes) -> dict:
        sib = {"rfilename": path, "size": len(data), "blobId": git_blob_sha1(data)}
        if path.endswith(self.LFS_SUFFIXES):
            sib["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                          "pointerSize": 134}
        return sib

    def _send(self, h, status, body=b"", headers=None, head=False):
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head and body:
            h.wfile.write(body)

    def _error(self, h, code, head):
        self._send(h, 404, json.dumps({"error": code}).encode(),
                   {"X-Error-Code": code, "Content-Type": "application/json"}, head)

    def _tree(self, repo: str, commit: str) -> list[dict]:
        out = []
        for path, data in sorted(self.repos[repo]["commits"][commit].items()):
            meta = self._meta(path, data)
            item = {"type": "file", "path": path, "size": len(data), "oid": meta["blobId"]}
            if "lfs" in meta:
                item["lfs"] = {"oid": meta["lfs"]["sha256"], "size": len(data), "pointerSize": 134}
            out.append(item)
        return out

    @staticmethod
    def _body(h) -> bytes:
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(h.rfile.read(size))
                h.rfile.readline()
        return h.rfile.read(int(h.headers.get("Content-Length") or 0))

    def _json(self, h, status: int, body) -> None:
        self._send(h, status, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def _handle_write(self, h) -> None:
        from urllib.parse import unquote, urlsplit

        path = unquote(urlsplit(h.path).path)
        body = self._body(h)
        self.hits.append(f"{h.command} {h.path}")
        with self.lock:
            if h.command == "PUT":
                m = re.match(r"^/lfs/([0-9a-f]{64})$", path)
                if not m or hashlib.sha256(body).hexdigest() != m.group(1):
                    return self._json(h, 400, {"error": "sha256 does not match the oid"})
                self.lfs[m.group(1)] = body
                self.bytes_received += len(body)
                return self._send(h, 200)
            req = json.loads(body or b"{}") if "ndjson" not in h.headers.get("Content-Type", "") \
                else [json.loads(line) for line in body.splitlines() if line.strip()]
            if path == "/api/repos/create":
                repo = "/".join(x for x in (req.get("organization"), req["name"]) if x)
                if repo in self.repos:
                    return self._json(h, 409, {"error": "You already created this model repo",
                                               "url": f"{self.url}/{repo}"})
                self.add_commit(repo, {})
                return self._json(h, 200, {"url": f"{self.url}/{repo}"})
            if path == "/api/validate-yaml":
                return self._json(h, 200, {"errors": [], "warnings": []})
            m = re.match(r"^/api/models/(.+?)/branch/([^/]+)$", path)
            if m:
                refs = self.repos[m.group(1)]["refs"]
                if m.group(2) in refs:
                    return self._json(h, 409, {"error": "branch exists"})
                refs[m.group(2)] = refs["main"]
                return self._json(h, 200, {})
            m = re.match(r"^/api/models/(.+?)/preupload/([^/]+)$", path)
            if m:
                return self._json(h, 200, {"files": [
                    {"path": f["path"], "shouldIgnore": False,
                     "uploadMode": "lfs" if f["path"].endswith(self.LFS_SUFFIXES) else "regular"}
                    for f in req["files"]]})
            m = re.match(r"^/(.+?)\.git/info/lfs/objects/batch$", path)
            if m:
                objects = []
                for o in req["objects"]:
                    item = {"oid": o["oid"], "size": o["size"]}
                    if o["oid"] not in self.lfs:
                        item["actions"] = {"upload": {"href": f"{self.url}/lfs/{o['oid']}"}}
                    objects.append(item)
                return self._json(h, 200, {"transfer": "basic", "objects": objects})
            m = re.match(r"^/api/models/(.+?)/commit/([^/]+)$", path)
            if m:
                repo, rev = m.groups()
                commit, err = self._resolve(repo, rev)
                if err:
                    return self._error(h, err, False)
                files = dict(self.repos[repo]["commits"][commit])
                changed = []
                for op in req:
                    if op["key"] == "file":
                        data = base64.b64decode(op["value"]["content"])
                        self.bytes_received += len(data)
                    elif op["key"] == "lfsFile":
                        data = self.lfs.get(op["value"]["oid"])
                        if data is None:
                            return self._json(h, 400, {"error": "LFS object not uploaded"})
                    else:
                        continue
                    files[op["value"]["path"]] = data
                    changed.append(op["value"]["path"])
                new = self.add_commit(repo, files, branch=rev)
                self.commits_made.append(changed)
                return self._json(h, 200, {"commitUrl": f"{self.url}/{repo}/commit/{new}",
                                           "commitOid": new})
        return self._json(h, 404, {"error": f"no such endpoint: {h.command} {path}"})

    def _handle(self, h, *, head: bool) -> None:
        from urllib.parse import unquote, urlsplit

        url = urlsplit(h.path)
        path = unquote(url.path)
        self.hits.append(f"{h.command} {h.path} {h.headers.get('Range', '')}".strip())
        self.user_agents.append(h.headers.get("User-Agent", ""))
        m = re.match(r"^/api/models/(.+?)/revision/([^/]+)$", path)
        if m:
            commit, err = self._resolve(m.group(1), m.group(2))
            if err:
                return self._error(h, err, head)
            files = self.repos[m.group(1)]["commits"][commit]
            body = {"id": m.group(1), "modelId": m.group(1), "sha": commit, "private": False,
                    "siblings": [self._meta(p, d) for p, d in sorted(files.items())]}
            return self._send(h, 200, json.dumps(body).encode(),
                              {"Content-Type": "application/json"}, head)
        m = re.match(r"^/api/models/(.+?)/tree/([^/]+)$", path)
        if m:
            commit, err = self._resolve(m.group(1), m.group(2))
            if err:
                return self._error(h, err, head)
            return self._send(h, 200, json.dumps(self._tree(m.group(1), commit)).encode(),
                              {"Content-Type": "application/json"}, head)
        if path.startswith("/presigned/"):
            return self._send(h, 503, f"<Error><Code>SlowDown</Code><Resource>{h.path}"
                              "</Resource></Error>".encode(), {"Content-Type": "application/xml"},
                              head)
        if path.startswith("/storage/"):  # the other host a redirect leads to
            path = path[len("/storage"):]
            with self.lock:
                self.storage_auth.append(h.headers.get("Authorization"))
        elif self.storage_host and not head:
            with self.lock:
                self.hub_auth.append(h.headers.get("Authorization"))
            host, port = self.storage_host, self.httpd.server_address[1]
            return self._send(h, 302, b"", {"Location": f"http://{host}:{port}/storage{h.path}"})
        m = re.match(r"^/(.+?)/resolve/([^/]+)/(.+)$", path)
        if not m:
            return self._send(h, 404, b"not found", {}, head)
        if self.presigned_5xx and not head:
            key, sig = self.PRESIGNED_SECRETS
            query = ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
                     f"{key}%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20260101T000000Z"
                     f"&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={sig}")
            return self._send(h, 302, b"", {"Location": f"{self.url}/presigned/{m.group(3)}?{query}"})
        repo, rev, fname = m.groups()
        commit, err = self._resolve(repo, rev)
        if err:
            return self._error(h, err, head)
        data = self.repos[repo]["commits"][commit].get(fname)
        if data is None:
            return self._error(h, "EntryNotFound", head)
        meta = self._meta(fname, data)
        etag = meta["lfs"]["sha256"] if "lfs" in meta else meta["blobId"]
        headers = {"ETag": f'"{etag}"', "X-Repo-Commit": commit, "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if "lfs" in meta:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))})
        rng = h.headers.get("Range")
        if rng:
            rm = re.match(r"bytes=(\d+)-(\d*)$", rng.strip())
            start = int(rm.group(1))
            end = int(rm.group(2)) + 1 if rm.group(2) else len(data)
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
            return self._send(h, 206, data[start:end], headers, head)
        return self._send(h, 200, data, headers, head)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
