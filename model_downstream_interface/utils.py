"""Helpers for choosing feature layers."""

from __future__ import annotations

from typing import Sequence

__all__ = ["get_pyramid_feature_layer_indexes"]


def get_pyramid_feature_layer_indexes(shapes_across_layers: Sequence[Sequence[int]]) -> list[int]:
    """The last layer of every pyramid level: each index whose shape differs from the next
    layer's, and the last index.

    Example:
        >>> get_pyramid_feature_layer_indexes([(56, 56, 96)] * 2 + [(28, 28, 192)] * 2)
        [1, 3]
    """
    shapes = [tuple(s) for s in shapes_across_layers]
    if not shapes:
        return []
    picked = [i for i in range(len(shapes) - 1) if shapes[i] != shapes[i + 1]]
    return picked + [len(shapes) - 1]
