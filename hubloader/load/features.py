"""The feature-extraction interface (the downstream platform's ``BigModel4DownstreamInterface``),
implemented once for every model.

A family declares its feature points with :meth:`FeaturesMixin.feature_entries`: a list of
:class:`FeatureEntry` (the submodule whose output is captured, and how one sample's feature
shape follows from one input sample's shape). Everything else — depth, declared shapes, hooks,
the capture buffer — is written here, once.

Shapes are per sample, as the platform defines them: ``input_shape`` is ``(seq_len,)`` for text
and ``(channels, height, width)`` for images, and the declared shape is exactly the shape of the
tensor :meth:`~FeaturesMixin.fetch_features` returns, less its batch dimension.

Example:
    >>> model.get_depth()
    12
    >>> model.get_features_shape((16,), 3)               # text: (seq_len,)
    (16, 768)
    >>> model.register_features_buffer_by_layer_indexes([3, -1])
    >>> _ = model(**batch)
    >>> first, last = model.fetch_features()              # [batch, 16, 768] each
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn

from ..errors import FeaturesNotCapturedError, FeatureShapeError
from .platform import BigModel4DownstreamInterface, LayerIndexNotFoundError

__all__ = ["FeatureEntry", "FeaturesMixin", "token_features", "spatial_features"]

logger = logging.getLogger(__name__)

Shape = tuple[int, ...]


@dataclass(frozen=True)
class FeatureEntry:
    """One feature point of a model.

    Attributes:
        module: dotted path of the submodule whose forward output is captured (the first
            element when the module returns a tuple, e.g. a block returning its KV cache too).
        shape: one input sample's shape (``(seq_len,)`` or ``(channels, height, width)``) ->
            one sample's feature shape.
        reduction: spatial downsampling of this feature relative to the input (1 for tokens).
    """

    module: str
    shape: Callable[[Shape], Shape]
    reduction: int = 1


def token_features(module: str, width: int, *, extra_tokens: int = 0) -> FeatureEntry:
    """A ``[seq (+ extra_tokens), width]`` feature of a text model."""
    return FeatureEntry(module, lambda s: (s[0] + extra_tokens, width))


def spatial_features(module: str, channels: int, reduction: int) -> FeatureEntry:
    """A ``[channels, H / reduction, W / reduction]`` feature map (ceil division)."""
    def shape(s: Shape) -> Shape:
        return (channels, -(-s[1] // reduction), -(-s[2] // reduction))
    return FeatureEntry(module, shape, reduction)


def _output_tensor(output: Any) -> torch.Tensor:
    while isinstance(output, (tuple, list)):
        output = output[0]
    if isinstance(output, dict):
        output = output["hidden_states"]
    return output


class FeaturesMixin(BigModel4DownstreamInterface):
    """``get_depth`` / ``get_features_shape`` / hooks, over ``feature_entries()``.

    Families override :meth:`feature_entries` and, where the feature maps shrink from entry to
    entry (CNNs, Swin), set ``hierarchical_features = True``.
    """

    hierarchical_features: bool = False
    input_rank: int = 2  # the forward input's rank: 2 (batch, seq); 4 (batch, channels, H, W)

    def feature_entries(self) -> list[FeatureEntry]:
        """The model's feature points, shallow to deep (override in each family)."""
        return []

    # -- declared shapes ----------------------------------------------------------------------
    def get_depth(self) -> int:
        """The number of feature points (layer indexes run ``0 .. depth - 1``)."""
        return len(self.feature_entries())

    def is_hierarchical_features(self) -> bool:
        """Whether feature maps change resolution with depth (CNN/Swin) or not (ViT/BERT)."""
        return bool(self.hierarchical_features)

    def _index(self, layer_index: Any, depth: int) -> int:
        if isinstance(layer_index, bool) or not isinstance(layer_index, int):
            raise LayerIndexNotFoundError(
                f"layer index must be an int, got {layer_index!r} ({type(layer_index).__name__})")
        if not -depth <= layer_index < depth:
            raise LayerIndexNotFoundError(
                f"layer index {layer_index} is out of range: {type(self).__name__} has "
                f"{depth} feature layers (use 0..{depth - 1}, or -1 for the last)")
        return layer_index % depth

    def _check_layer_index_range(self, layer_index: int | Sequence[int]) -> None:
        """The platform's range check, raising :class:`LayerIndexNotFoundError` (negative
        indexes count from the end, as everywhere in hubloader)."""
        depth = self.get_depth()
        for i in [layer_index] if isinstance(layer_index, int) else list(layer_index):
            self._index(i, depth)

    def _check_input_shape(self, input_shape: Any) -> Shape:
        rank = self.input_rank - 1
        want = "(seq_len,)" if rank == 1 else "(channels, height, width)"
        if not isinstance(input_shape, (tuple, list, torch.Size)):
            raise FeatureShapeError(f"input_shape must be one sample's shape {want} (no batch "
                                    f"dimension), got {type(input_shape).__name__}")
        shape = tuple(input_shape)
        if len(shape) != rank or not all(
                isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise FeatureShapeError(f"input_shape must be one sample's shape {want} with positive "
                                    f"ints and no batch dimension, got {shape!r}")
        channels = getattr(getattr(self, "config", None), "num_channels", None)
        if rank == 3 and channels is not None and shape[0] != channels:
            raise FeatureShapeError(f"input_shape {shape!r} has {shape[0]} channels; "
                                    f"{type(self).__name__} takes {channels}-channel images")
        return shape

    def get_features_shape(self, input_shape: Sequence[int], layer_index: int) -> Shape:
        """One sample's feature shape at ``layer_index`` for one input sample of ``input_shape``.

        Args:
            input_shape: ``(seq_len,)`` for text models, ``(channels, height, width)`` for
                vision models (one sample, no batch dimension).
            layer_index: ``0 .. get_depth() - 1``; negative counts from the end.

        Returns:
            The shape of the tensor :meth:`fetch_features` returns for that layer, less its
            batch dimension.

        Raises:
            LayerIndexNotFoundError: ``layer_index`` is out of range.
            FeatureShapeError: ``input_shape`` has the wrong rank or channel count, or
                non-positive sizes (an ``InputError`` and a ``ValueError``).

        Example:
            >>> vit.get_features_shape((3, 224, 224), 0)
            (197, 768)
        """
        entries = self.feature_entries()
        entry = entries[self._index(layer_index, len(entries))]
        return tuple(entry.shape(self._check_input_shape(input_shape)))

    def get_features_shapes_all_layers(self, input_shape: Sequence[int]) -> list[Shape]:
        """:meth:`get_features_shape` for every layer index, shallow to deep."""
        shape = self._check_input_shape(input_shape)
        return [tuple(e.shape(shape)) for e in self.feature_entries()]

    # -- capture ------------------------------------------------------------------------------
    def _feature_state(self) -> dict[str, Any]:
        state = self.__dict__.get("_features_state")
        if state is None:
            state = {"handles": [], "indexes": [], "buffer": {}}
            self.__dict__["_features_state"] = state
        return state

    def clear_features_hooks(self) -> None:
        """Remove every feature hook and forget captured features."""
        state = self._feature_state()
        for handle in state["handles"]:
            handle.remove()
        state["handles"].clear()
        state["indexes"] = []
        state["buffer"].clear()

    def register_features_buffer_by_layer_indexes(self, indexes: Iterable[int]) -> None:
        """Capture the features at ``indexes`` on every following forward pass.

        Re-registering removes the hooks of an earlier call first.

        Args:
            indexes: layer indexes (``0 .. get_depth() - 1``, negative from the end).

        Raises:
            LayerIndexNotFoundError: an index is out of range (no hook is left registered).
        """
        entries = self.feature_entries()
        resolved = [self._index(i, len(entries)) for i in list(indexes)]
        self.clear_features_hooks()
        state = self._feature_state()
        state["indexes"] = resolved
        buffer = state["buffer"]
        for i in dict.fromkeys(resolved):
            module: nn.Module = self.get_submodule(entries[i].module)  # type: ignore[attr-defined]

            def hook(_mod, _args, output, i=i):
                buffer[i] = _output_tensor(output)

            state["handles"].append(module.register_forward_hook(hook))
        logger.debug("%s: capturing features of layers %s", type(self).__name__, resolved)

    def fetch_features(self) -> list[torch.Tensor]:
        """The features captured by the latest forward pass, in the registered order.

        Returns:
            One tensor per registered index (its shape is :meth:`get_features_shape`).

        Raises:
            FeaturesNotCapturedError: nothing is registered, or no forward pass ran since.
        """
        state = self._feature_state()
        if not state["indexes"]:
            raise FeaturesNotCapturedError(
                "no feature layers are registered; call "
                "register_features_buffer_by_layer_indexes([...]) and run a forward pass")
        missing = [i for i in state["indexes"] if i not in state["buffer"]]
        if missing:
            raise FeaturesNotCapturedError(
                f"no features captured for layer(s) {missing} yet; run a forward pass first")
        return [state["buffer"][i] for i in state["indexes"]]
