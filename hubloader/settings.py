"""Every environment variable hubloader reads, parsed in one place and read at call time
(so tests and users can change them after import).

Precedence everywhere: explicit argument, then environment variable, then default.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

__all__ = [
    "CONFIG_NAME",
    "NO_WEIGHT_PATTERNS",
    "SAFE_WEIGHTS_NAME",
    "SAFE_WEIGHTS_INDEX_NAME",
    "PT_WEIGHTS_NAME",
    "PT_WEIGHTS_INDEX_NAME",
    "CARD_NAME",
    "hub_home",
    "is_offline",
    "endpoint",
    "progress_disabled",
    "lock_timeout",
    "lock_lifetime",
    "soft_locks",
    "extra_card_dirs",
    "s3_endpoint_url",
    "multipart_threshold",
    "multipart_chunksize",
    "zip_max_size",
    "zip_max_ratio",
    "zip_max_files",
    "hf_endpoint",
    "hf_hub_cache",
    "user_agent",
    "max_retries",
    "retry_backoff",
    "network_timeout",
    "parallel_threshold",
    "max_workers",
    "partial_max_age",
    "max_param_bytes",
    "fanout_mode",
    "fanout_degree",
    "fanout_chunk_bytes",
    "fanout_timeout",
    "env_bool",
    "env_float",
    "env_int",
]

CONFIG_NAME = "config.json"
#: what a model directory needs when no weights are loaded: config.json and the tokenizer files
NO_WEIGHT_PATTERNS = ("*.json", "*.txt", "*.model")
SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PT_WEIGHTS_NAME = "pytorch_model.bin"
PT_WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
CARD_NAME = "README.md"

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


def env_bool(name: str, default: bool = False) -> bool:
    """Parse a boolean environment variable (``1/true/yes/on`` or ``0/false/no/off``)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"environment variable {name}={raw!r} is not a boolean; use 1 or 0")


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not a number") from None


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer") from None


def hub_home() -> Path:
    """The cache root: ``HUBLOADER_HOME``, else ``$XDG_CACHE_HOME/hubloader``, else
    ``~/.cache/hubloader``."""
    explicit = os.environ.get("HUBLOADER_HOME")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "hubloader"


def is_offline(offline: bool | None = None) -> bool:
    """Argument first, then ``HUBLOADER_OFFLINE``, then ``HF_HUB_OFFLINE``."""
    if offline is not None:
        if not isinstance(offline, bool):  # offline="false" would read as True
            from .errors import ConfigError

            raise ConfigError(f"offline must be True, False or None, got {offline!r}")
        return offline
    return env_bool("HUBLOADER_OFFLINE", env_bool("HF_HUB_OFFLINE", False))


def endpoint() -> str | None:
    """``HUBLOADER_ENDPOINT``: a base URI every card name is served from instead of its source."""
    value = os.environ.get("HUBLOADER_ENDPOINT", "").strip()
    return value or None


def progress_disabled() -> bool:
    """``HUBLOADER_DISABLE_PROGRESS_BARS``, else huggingface_hub's
    ``HF_HUB_DISABLE_PROGRESS_BARS``."""
    return env_bool("HUBLOADER_DISABLE_PROGRESS_BARS",
                    env_bool("HF_HUB_DISABLE_PROGRESS_BARS", False))


def lock_timeout() -> float:
    """Seconds a process waits on another's download lock (``HUBLOADER_LOCK_TIMEOUT``)."""
    return env_float("HUBLOADER_LOCK_TIMEOUT", 600.0)


def lock_lifetime() -> float:
    """Seconds without a heartbeat after which a soft lock's holder, or a partial download's
    writer, counts as gone (``HUBLOADER_LOCK_LIFETIME``). Every process sharing a cache must
    use the same value, longer than the filesystem's attribute caching (NFS ``acregmax``)."""
    return max(0.1, env_float("HUBLOADER_LOCK_LIFETIME", 120.0))


def soft_locks() -> bool:
    """``HUBLOADER_SOFT_LOCKS``: use lock files with heartbeats even where ``flock`` seems to
    work (Lustre ``localflock``, NFS ``local_lock=flock``: locks that hold on one node only)."""
    return env_bool("HUBLOADER_SOFT_LOCKS", False)


def extra_card_dirs() -> list[Path]:
    """Extra model-card directories (``HUBLOADER_CARDS_PATH``, ``os.pathsep``-separated),
    searched before the built-in cards."""
    raw = os.environ.get("HUBLOADER_CARDS_PATH", "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


# -- sources and transfers -----------------------------------------------------------------
def s3_endpoint_url() -> str | None:
    """``HUBLOADER_S3_ENDPOINT_URL``: an S3-compatible server (SeaweedFS, MinIO, ...) for
    ``s3://`` sources. Unset: boto3's own resolution (``AWS_ENDPOINT_URL_S3``, then AWS)."""
    value = os.environ.get("HUBLOADER_S3_ENDPOINT_URL", "").strip()
    return value or None


# -- publishing and packages --------------------------------------------------------------
def multipart_threshold() -> int:
    """``HUBLOADER_MULTIPART_THRESHOLD_MB``: files at least this big are pushed to S3 as
    multipart uploads (default 64 MiB)."""
    return max(1, int(env_float("HUBLOADER_MULTIPART_THRESHOLD_MB", 64.0) * 2**20))


def multipart_chunksize() -> int:
    """``HUBLOADER_MULTIPART_CHUNK_MB``: part size of multipart uploads (default 16 MiB; S3
    needs at least 5 MiB for every part but the last)."""
    return max(5 * 2**20, int(env_float("HUBLOADER_MULTIPART_CHUNK_MB", 16.0) * 2**20))


def zip_max_size() -> int:
    """``HUBLOADER_ZIP_MAX_SIZE_MB``: most bytes a package zip may inflate to (default 64 GiB)."""
    return max(1, int(env_float("HUBLOADER_ZIP_MAX_SIZE_MB", 64.0 * 1024) * 2**20))


def zip_max_ratio() -> float:
    """``HUBLOADER_ZIP_MAX_RATIO``: highest compression ratio a zip member of 1 MiB or more,
    and a whole zip inflating to 1 MiB or more, may have (default 100; weights compress far
    less)."""
    return env_float("HUBLOADER_ZIP_MAX_RATIO", 100.0)


def zip_max_files() -> int:
    """``HUBLOADER_ZIP_MAX_FILES``: most members a package zip may have (default 10000)."""
    return env_int("HUBLOADER_ZIP_MAX_FILES", 10000)


def chat_template_timeout() -> float:
    """``HUBLOADER_CHAT_TEMPLATE_TIMEOUT``: seconds of CPU a chat template may take to render
    (default 5)."""
    return env_float("HUBLOADER_CHAT_TEMPLATE_TIMEOUT", 5.0)


def chat_template_max_chars() -> int:
    """``HUBLOADER_CHAT_TEMPLATE_MAX_CHARS``: the longest text a chat template may render, and
    the longest string or list it may build (default 4,000,000 characters)."""
    return env_int("HUBLOADER_CHAT_TEMPLATE_MAX_CHARS", 4_000_000)

def hf_endpoint() -> str | None:
    """``HUBLOADER_HF_ENDPOINT``, else ``HF_ENDPOINT``: the hub server for ``hf://`` sources
    (read at call time, unlike huggingface_hub's own import-time constant)."""
    for name in ("HUBLOADER_HF_ENDPOINT", "HF_ENDPOINT"):
        value = os.environ.get(name, "").strip()
        if value:
            return value.rstrip("/")
    return None


def hf_hub_cache() -> Path:
    """huggingface_hub's cache, reused for ``hf://`` sources: ``HF_HUB_CACHE``, else
    ``HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub`` (``~/.cache/huggingface/hub``)."""
    explicit = os.environ.get("HF_HUB_CACHE", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME", "").strip()
    if home:
        return Path(home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def user_agent() -> str:
    """``hubloader/<version>``, sent on hub and S3 requests."""
    from ._version import __version__

    return f"hubloader/{__version__}"


def max_retries() -> int:
    """``HUBLOADER_MAX_RETRIES``: consecutive failed attempts (without progress) per file
    before a :class:`~hubloader.errors.NetworkError` (default 5, at least 1)."""
    return max(1, env_int("HUBLOADER_MAX_RETRIES", 5))


def retry_backoff() -> float:
    """``HUBLOADER_RETRY_BACKOFF``: first retry delay in seconds, doubled per retry, capped
    at 10 s (default 0.5)."""
    return max(0.0, env_float("HUBLOADER_RETRY_BACKOFF", 0.5))


def network_timeout() -> float:
    """``HUBLOADER_TIMEOUT``: connect/read timeout in seconds for one request (default 30)."""
    return env_float("HUBLOADER_TIMEOUT", 30.0)


def parallel_threshold() -> int:
    """``HUBLOADER_PARALLEL_THRESHOLD_MB``: files at least this big are fetched with parallel
    ranged GETs (default 64 MiB; 0 turns parallel fetching off)."""
    return int(env_float("HUBLOADER_PARALLEL_THRESHOLD_MB", 64.0) * 2**20)


def max_workers() -> int:
    """``HUBLOADER_MAX_WORKERS``: parallel ranged GETs per big file, and multipart parts in
    flight per pushed file (default 8)."""
    return max(1, env_int("HUBLOADER_MAX_WORKERS", 8))


def partial_max_age() -> float:
    """``HUBLOADER_PARTIAL_MAX_AGE_HOURS``: a partial download untouched for this long is
    abandoned and removed on the repository's next download (default 24 h)."""
    return env_float("HUBLOADER_PARTIAL_MAX_AGE_HOURS", 24.0) * 3600.0


def max_param_bytes() -> int | None:
    """``HUBLOADER_MAX_PARAM_BYTES``: most bytes a model's weights may take; a config asking
    for more is refused before anything is allocated. Unset: CPU loads are bounded by the
    memory available."""
    if not os.environ.get("HUBLOADER_MAX_PARAM_BYTES", "").strip():
        return None
    value = env_int("HUBLOADER_MAX_PARAM_BYTES", 0)
    if value <= 0:
        from .errors import ConfigError

        raise ConfigError(f"HUBLOADER_MAX_PARAM_BYTES={value} must be a positive number of bytes")
    return value


_FANOUT_MODES = ("off", "chain", "tree")


def fanout_mode() -> str:
    """``HUBLOADER_FANOUT``: how the nodes of a ``torch.distributed`` job share one fetch
    (``chain``, the default: each node passes the bytes to the next; ``tree``: to
    ``HUBLOADER_FANOUT_DEGREE`` others; ``off``: every node fetches from the source)."""
    value = os.environ.get("HUBLOADER_FANOUT", "chain").strip().lower() or "chain"
    if value not in _FANOUT_MODES:
        raise ConfigError(f"HUBLOADER_FANOUT={value!r} is not one of {', '.join(_FANOUT_MODES)}")
    return value


def fanout_degree() -> int:
    """``HUBLOADER_FANOUT_DEGREE``: how many nodes each node feeds in ``tree`` mode (2)."""
    value = env_int("HUBLOADER_FANOUT_DEGREE", 2)
    if value < 1:
        raise ConfigError(f"HUBLOADER_FANOUT_DEGREE={value} must be at least 1")
    return value


def fanout_chunk_bytes() -> int:
    """``HUBLOADER_FANOUT_CHUNK_MB``: the size of each message between nodes (4 MiB); a
    node forwards a chunk as soon as it has it, so the last node trails the first by about
    one chunk's time per hop."""
    value = env_float("HUBLOADER_FANOUT_CHUNK_MB", 4.0)
    if not 0 < value <= 1024:
        raise ConfigError(f"HUBLOADER_FANOUT_CHUNK_MB={value} must be in (0, 1024]")
    return max(1, int(value * (1 << 20)))


def fanout_timeout() -> float:
    """``HUBLOADER_FANOUT_TIMEOUT``: seconds a node waits for a peer's next chunk (for a
    peer to connect, or for a sign of life from node 0 while it fetches) before it reports
    that peer as failed (120)."""
    value = env_float("HUBLOADER_FANOUT_TIMEOUT", 120.0)
    if value <= 0:
        raise ConfigError(f"HUBLOADER_FANOUT_TIMEOUT={value} must be positive")
    return value
