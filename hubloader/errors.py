"""Typed errors. Every error hubloader raises is a :class:`HubLoaderError` that also
inherits the builtin a caller would catch anyway, so ``except FileNotFoundError`` keeps working.

Messages say what was wrong and what to do next.
"""

from __future__ import annotations

from typing import Iterable

from .redaction import redact

__all__ = [
    "HubLoaderError",
    "DatasetError",
    "FederatedError",
    "ModelNotFoundError",
    "UnsupportedModelError",
    "UnknownTaskError",
    "InvalidModelNameError",
    "ConfigError",
    "CardError",
    "WeightsError",
    "WeightsNotFoundError",
    "WeightsMismatchError",
    "UnsafeWeightsError",
    "TokenizerError",
    "ChatTemplateError",
    "InputError",
    "AdapterError",
    "QuantizationError",
    "RegistryError",
    "GenerationArgumentError",
    "FeatureShapeError",
    "FeaturesNotCapturedError",
    "SourceError",
    "UnsupportedSourceError",
    "RemoteNotFoundError",
    "AccessDeniedError",
    "RevisionNotFoundError",
    "NetworkError",
    "IntegrityError",
    "LockTimeoutError",
    "PrefetchError",
    "PrefetchTimeoutError",
    "ReadOnlyCacheError",
    "LocalEntryNotFoundError",
    "DiskFullError",
    "PackageError",
    "UntrustedCodeError",
]


class HubLoaderError(Exception):
    """Base class of every error raised by hubloader.

    String arguments are redacted (:func:`hubloader.redaction.redact`): a message built from
    a presigned URL or a library's error text never carries its signature or token.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


# -- names, cards, registry -------------------------------------------------------------
class ModelNotFoundError(HubLoaderError, LookupError):
    """A model name matches no card, no local directory and no registered class."""


class UnsupportedModelError(ModelNotFoundError, NotImplementedError):
    """A model hubloader knows of and deliberately does not load (another library's job, or
    hardware it cannot run on); the message says why and what to use."""


class UnknownTaskError(HubLoaderError, KeyError):
    """A task name is not in the task table."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class InvalidModelNameError(HubLoaderError, ValueError):
    """A model name is malformed, or would escape the directory it is joined to."""


class ConfigError(HubLoaderError, ValueError):
    """``config.json`` (or an override) is not valid for the model."""


class CardError(HubLoaderError, ValueError):
    """A model card's front matter is broken or misses required fields."""


# -- weights ----------------------------------------------------------------------------
class WeightsError(HubLoaderError, ValueError):
    """A weight file is unreadable: truncated, corrupt, or with an absurd header."""


class WeightsNotFoundError(HubLoaderError, FileNotFoundError):
    """No weight file (safetensors, bin, or a sharded index) in the model directory."""


class WeightsMismatchError(HubLoaderError, ValueError):
    """Checkpoint keys do not match the model's (``strict=True``).

    Attributes:
        missing: sorted keys the model needs that the checkpoint lacks.
        unexpected: sorted checkpoint keys the model has no place for.
        mismatched: sorted ``(key, checkpoint_shape, model_shape)`` tuples.
    """

    def __init__(self, message: str, *, missing: Iterable[str] = (),
                 unexpected: Iterable[str] = (),
                 mismatched: Iterable[tuple[str, tuple[int, ...], tuple[int, ...]]] = ()):
        super().__init__(message)
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.mismatched = sorted(mismatched)


class UnsafeWeightsError(HubLoaderError, ValueError):
    """A pickle checkpoint would execute code or load objects that are not tensors."""


class TokenizerError(HubLoaderError, ValueError):
    """No usable tokenizer file, or a corrupt one."""


class ChatTemplateError(TokenizerError):
    """The model has no chat template, or its template failed to render."""


class InputError(HubLoaderError, TypeError):
    """Wrong input types or shapes for a model's ``forward`` or ``generate``."""


class GenerationArgumentError(InputError, ValueError):
    """A ``generate()`` argument is out of range (``max_new_tokens <= 0``, ``top_p > 1``...)."""


class FeatureShapeError(InputError, ValueError):
    """``get_features_shape`` got a sample shape of the wrong rank, channel count or size."""


class FeaturesNotCapturedError(HubLoaderError, RuntimeError):
    """``fetch_features()`` was called before any layer was registered or any forward ran."""


# -- sources, cache, network ------------------------------------------------------------
class SourceError(HubLoaderError, OSError):
    """A model source (local hub, S3, the Hugging Face hub) failed."""


class UnsupportedSourceError(SourceError, ValueError):
    """A URI scheme no source handles, or a source whose optional dependency is missing."""


class RemoteNotFoundError(SourceError, FileNotFoundError):
    """A bucket, key, repository or file does not exist at the source."""


class AccessDeniedError(SourceError, PermissionError):
    """The source refused access (credentials missing or insufficient)."""


class RevisionNotFoundError(RemoteNotFoundError):
    """The requested revision (commit, tag, branch, version) does not exist."""


class NetworkError(SourceError, ConnectionError):
    """A transfer failed after bounded retries; the message names the URI and the cause."""


class IntegrityError(SourceError, ValueError):
    """A file's sha256 does not match the expected digest.

    Attributes:
        path: the file (name in the snapshot).
        expected: the expected hex digest.
        actual: the digest actually computed.
    """

    def __init__(self, message: str, *, path: str = "", expected: str = "", actual: str = ""):
        super().__init__(message)
        self.path, self.expected, self.actual = path, expected, actual


class PeerTransferError(HubLoaderError, ConnectionError):
    """A node of a fan-out over ``torch.distributed`` (see :mod:`hubloader.hub.fanout`)
    failed or went silent while the snapshot travelled from node to node; nothing of the
    transfer is left visible in the cache.

    Attributes:
        rank: the global rank of the node that failed (its local rank 0), ``-1`` if unknown.
    """

    def __init__(self, message: str, *, rank: int = -1):
        super().__init__(message)
        self.rank = rank


class LockTimeoutError(HubLoaderError, TimeoutError):
    """Another process held a download lock for longer than the configured timeout."""


class PrefetchError(HubLoaderError, ChildProcessError):
    """A background fetch (:func:`hubloader.prefetch`) could not be started, or its child was
    stopped and could not finish."""


class PrefetchTimeoutError(PrefetchError, TimeoutError):
    """A join of a background fetch waited longer than its ``timeout``; the fetch goes on."""


class ReadOnlyCacheError(HubLoaderError, PermissionError):
    """The cache must be written (a lock taken, a file fetched) but this process may only read
    it: a read-only mount, or no write permission."""


class LocalEntryNotFoundError(HubLoaderError, FileNotFoundError):
    """Offline (or cache-only) lookup found nothing in the cache."""


class DiskFullError(HubLoaderError, OSError):
    """The disk ran out of space while writing; no partial file was left under a final name."""


# -- packages and custom code -----------------------------------------------------------
class PackageError(HubLoaderError, ValueError):
    """A model package (zip or directory) failed validation."""


class UntrustedCodeError(HubLoaderError, PermissionError):
    """A model ships code that would only run with ``trust_remote_code=True``."""


# -- AlphaMed AutoModel, federated runs -----------------------------------------------------
class DatasetError(HubLoaderError, ValueError):
    """A fine-tuning dataset folder is missing, empty or laid out wrongly."""


class FederatedError(HubLoaderError, RuntimeError):
    """A federated run failed: too few data owners answered, or Flower's processes stopped."""


class AdapterError(WeightsError, ValueError):
    """An adapter hubloader cannot merge, or one that does not fit the model."""


class QuantizationError(ConfigError):
    """A quantization this machine or install cannot apply (named, with what to do)."""


class RegistryError(HubLoaderError, KeyError):
    """A registry name is taken, unknown, or not a string."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""
