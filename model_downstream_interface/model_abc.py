"""``BigModel4DownstreamInterface``: what a pretrained model offers downstream tasks.

The platform's contract: a description, a ``from_pretrained`` constructor, a depth (the number
of feature layers), one sample's feature shape per layer, whether the features form a pyramid,
and forward hooks that buffer the features of registered layers. This module imports nothing but
the standard library, so hubloader's error module can build on it.
"""

from __future__ import annotations

import abc
from typing import Any, Sequence

__all__ = ["BigModel4DownstreamInterface", "LayerIndexNotFoundException"]


class LayerIndexNotFoundException(Exception):
    """A feature layer index outside ``0 .. get_depth() - 1``."""


class BigModel4DownstreamInterface(metaclass=abc.ABCMeta):
    """The interface a pretrained model implements for downstream tasks."""

    @abc.abstractmethod
    def get_description(self) -> str:
        """What the model is: its pretraining data, the paper, a short introduction."""

    @classmethod
    @abc.abstractmethod
    def from_pretrained(cls, load_weights: Any = None, *args: Any, **kwargs: Any) -> Any:
        """An instance with pretrained weights (``load_weights``: where they are; ``None``:
        the package's default weights)."""

    @abc.abstractmethod
    def get_depth(self) -> int:
        """The number of feature layers."""

    def _check_layer_index_range(self, layer_index: int | Sequence[int]) -> None:
        """Raise :class:`LayerIndexNotFoundException` unless every index is in
        ``0 .. get_depth() - 1``."""
        indexes = [layer_index] if isinstance(layer_index, int) else list(layer_index)
        depth = self.get_depth()
        for i in indexes:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < depth:
                raise LayerIndexNotFoundException(
                    f"layer index {i!r} is out of range: use 0..{depth - 1} (get_depth() is "
                    f"{depth})")

    @abc.abstractmethod
    def get_features_shape(self, input_shape: Sequence[int], layer_index: int) -> tuple[int, ...]:
        """One sample's feature shape at ``layer_index`` for one input sample of
        ``input_shape`` (no batch dimension), e.g. ``(3, 224, 224), 6 -> (28, 28, 192)``."""

    def get_features_shapes_all_layers(self, input_shape: Sequence[int]) -> list[tuple[int, ...]]:
        """:meth:`get_features_shape` for every layer, shallow to deep."""
        return [self.get_features_shape(input_shape, i) for i in range(self.get_depth())]

    @abc.abstractmethod
    def is_hierarchical_features(self) -> bool:
        """Whether the feature maps change resolution with depth (ResNet, Swin) or not (ViT)."""

    @abc.abstractmethod
    def register_features_buffer_by_layer_indexes(self, layer_indexes: Sequence[int]) -> None:
        """Buffer the features of these layers on every following forward pass (replacing an
        earlier registration)."""

    @abc.abstractmethod
    def fetch_features(self) -> Sequence[Any]:
        """The features the last forward pass buffered, in the registered order."""
