"""The downstream-platform interface's names as hubloader implements them: its model ABC and
its layer-index error, which here is also a typed :class:`~hubloader.errors.HubLoaderError`.

The platform's package is stdlib-only, so this module stays cheap to import; keeping the
error here leaves :mod:`hubloader.errors` a leaf that knows no plugin package.
"""

from __future__ import annotations

from model_downstream_interface.model_abc import (BigModel4DownstreamInterface,
                                                  LayerIndexNotFoundException)

from ..errors import HubLoaderError

__all__ = ["BigModel4DownstreamInterface", "LayerIndexNotFoundError"]


class LayerIndexNotFoundError(HubLoaderError, IndexError, LayerIndexNotFoundException):
    """A feature layer index is out of range (also the downstream-platform interface's
    ``LayerIndexNotFoundException``)."""
