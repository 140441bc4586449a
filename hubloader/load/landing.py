"""Reading the weights as they land.

A load that joins a :func:`hubloader.prefetch` follows the fetch file by file (see
:meth:`hubloader.hub.inflight.Prefetch.landed`). Each weight file of the checkpoint is read as
soon as it is verified and in the snapshot, and its tensors are brought to the load's device
and dtype, while the later shards still travel; the load after the fetch then assigns tensors
that are ready instead of reading and converting every shard after the last byte.

The configs and the shard index are fetched first (see :mod:`hubloader.hub.snapshot`), so the
dtype and the shard list are known before the first shard lands. Only the files the load
itself reads are taken (the same rule as :func:`hubloader.load.weights.find_weight_files`), each
once; a package that builds its model with its own code is left alone, as is anything this
cannot read: the load after the fetch reads it and reports what is wrong. A staged file is
handed over only to a load of the same file on disk, so a load from staged tensors gives the
same weights as a serial one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .. import settings
from .._gc import gc_paused
from .config import declared_dtype, read_config_file
from ..errors import HubLoaderError
from .remote_code import ENTRY_FIELDS, HUBCONF_NAME
from .weights import checkpoint_layout, read_weight_file, resolve_dtype, shard_names

if TYPE_CHECKING:
    from ..hub.inflight import Landed, Prefetch

__all__ = ["Staging"]

logger = logging.getLogger(__name__)

def _identity(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


class Staging:
    """The tensors of the weight files read while a prefetch still ran, on ``device`` in the
    load's dtype (``torch_dtype``, else the one ``config.json`` declares, else float32)."""

    def __init__(self, *, device: torch.device, torch_dtype: str | torch.dtype | None):
        self._device = device
        self._requested = torch_dtype
        self._dtype: torch.dtype | None = None  # known once config.json is in
        self._format: str | None = None
        self._index: str | None = None
        self._wanted: set[str] | None = None  # the weight files the load reads
        self._waiting: dict[str, Path] = {}  # landed before the dtype or the shard list
        self._tensors: dict[tuple[int, int], tuple[str, dict[str, torch.Tensor]]] = {}
        self._stopped = False
        #: the files the load took from here
        self.served: list[str] = []

    def follow(self, handle: Prefetch) -> Path:
        """Read the weights as ``handle``'s fetch lands them; return its directory.

        Raises:
            What the fetch raises (see :meth:`Prefetch.result`).
        """
        for landed in handle.landed():
            if self._stopped:
                continue
            try:
                self._take(handle.listing, landed)
            except (HubLoaderError, OSError, RuntimeError, ValueError) as err:
                logger.debug("not reading the weights as they land (%s); the load reads "
                             "them after the fetch", err)
                self._stop()
        return handle.result()

    def _stop(self) -> None:
        self._stopped = True
        self._tensors.clear()
        self._waiting.clear()

    def _take(self, listing: tuple[str, ...] | None, landed: Landed) -> None:
        if self._format is None:  # the first file: what the load will read
            names = listing or ()
            layout = checkpoint_layout(names)
            # a package with its own code reads its own weights
            if layout is None or HUBCONF_NAME in names or settings.CONFIG_NAME not in names:
                self._stop()
                return
            self._format, name, is_index = layout
            self._index, self._wanted = (name, None) if is_index else (None, {name})
        at = landed.snapshot_dir / landed.path
        if landed.path == settings.CONFIG_NAME:
            data = read_config_file(at)
            if any(f in data for f in ENTRY_FIELDS):
                self._stop()
                return
            requested = self._requested if self._requested is not None else declared_dtype(data)
            self._dtype = resolve_dtype(requested) or torch.float32
        elif landed.path == self._index:
            self._wanted = set(shard_names(at))
        else:
            self._waiting[landed.path] = at
        if self._dtype is None or self._wanted is None:
            return
        for path in [p for p in self._waiting if p in self._wanted]:
            self._read(path, self._waiting.pop(path))
        self._waiting.clear()  # not weights the load reads

    def _read(self, name: str, path: Path) -> None:
        assert self._format is not None and self._dtype is not None  # set before any read
        with gc_paused():  # long-lived tensors only, as in the build: see hubloader/_gc.py
            tensors = read_weight_file(path, self._format)
            for key, tensor in tensors.items():
                tensors[key] = tensor.to(device=self._device, dtype=self._dtype
                                         if tensor.is_floating_point() else tensor.dtype)
        self._tensors[_identity(path)] = (name, tensors)
        logger.debug("read %s as it landed (%d tensors)", name, len(tensors))

    def take(self, path: Path) -> dict[str, torch.Tensor] | None:
        """The tensors read from the file at ``path`` (once), or ``None`` if it was not read
        here: the caller reads it."""
        try:
            name, tensors = self._tensors.pop(_identity(path))
        except (KeyError, OSError):
            return None
        self.served.append(name)
        return tensors
