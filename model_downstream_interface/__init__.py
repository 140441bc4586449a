"""The downstream-platform interface, shipped with hubloader.

Packages written for the downstream platform (``hubconf.py`` + a package folder + ``weights/``)
import ``BigModel4DownstreamInterface`` from here and are loaded with :func:`load_model`, unchanged.
Every hubloader model already implements the interface.

Example:
    >>> import model_downstream_interface
    >>> from model_downstream_interface.utils import get_pyramid_feature_layer_indexes
    >>> model = model_downstream_interface.load_model("example/swin-transformer")
    >>> model.register_features_buffer_by_layer_indexes(
    ...     get_pyramid_feature_layer_indexes(model.get_features_shapes_all_layers((3, 224, 224))))
"""

from .hub import load_model
from .model_abc import BigModel4DownstreamInterface, LayerIndexNotFoundException

__all__ = ["BigModel4DownstreamInterface", "LayerIndexNotFoundException", "load_model"]

__version__ = "v0.1.0"
