"""The downstream platform's side of packaging: a card for a package that has none, and a run
of the ``BigModel4DownstreamInterface`` contract on a built model.

:func:`package_card` writes the card ``pack`` adds to a zip when the package has no
``README.md`` (the platform's layout has none): its fields from the model (or defaults), its
body from ``get_description()``, its ``files`` from the package. :func:`check_interface` feeds a
built model one random input and compares every declared feature shape with the feature it
fetches, as ``validate`` does before a package is accepted.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from .. import settings
from ..errors import PackageError

__all__ = ["LayerCheck", "InterfaceReport", "check_interface", "default_input_shape",
           "package_card", "build_package_model"]

logger = logging.getLogger(__name__)

_DEFAULT_IMAGE = (3, 224, 224)
_DEFAULT_TEXT = (16,)


@dataclass(frozen=True)
class LayerCheck:
    """One feature layer: the shape ``get_features_shape`` declares and the one fetched (both
    per sample, without the batch)."""

    index: int
    declared: tuple[int, ...]
    fetched: tuple[int, ...]

    @property
    def ok(self) -> bool:
        return self.declared == self.fetched


@dataclass
class InterfaceReport:
    """What :func:`check_interface` ran and found."""

    model_class: str
    input_shape: tuple[int, ...]
    depth: int
    hierarchical: bool
    layers: list[LayerCheck] = field(default_factory=list)

    def table(self) -> list[str]:
        """A per-layer table: index, declared shape, fetched shape, verdict."""
        rows = [("layer", "declared", "fetched", "")]
        rows += [(str(c.index), str(c.declared), str(c.fetched), "ok" if c.ok else "MISMATCH")
                 for c in self.layers]
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        return ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + ("  " + r[3] if r[3] else "")
                for r in rows]


def default_input_shape(model: Any) -> tuple[int, ...]:
    """One sample's shape to try ``model`` on: ``(16,)`` tokens for a hubloader text model,
    ``(channels, *image_size)`` for a hubloader vision model, else ``(3, 224, 224)``."""
    config = getattr(model, "config", None)
    if getattr(model, "input_rank", None) == 2:
        return _DEFAULT_TEXT
    size = getattr(config, "image_size", None)
    if isinstance(size, int):
        size = (size, size)
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return (int(getattr(config, "num_channels", 3)), int(size[0]), int(size[1]))
    return _DEFAULT_IMAGE


def _random_input(model: Any, shape: tuple[int, ...]) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    if getattr(model, "input_rank", None) == 2:
        vocab = int(getattr(model.config, "vocab_size", 2))
        return torch.randint(0, vocab, (1, *shape), generator=gen)
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    return torch.rand((1, *shape), generator=gen).to(device=device, dtype=dtype)


def _run(model: Any, x: torch.Tensor) -> None:
    with torch.no_grad():
        if getattr(model, "input_rank", None) != 2:
            model(x)  # the platform's image models take the batch positionally
            return
        if hasattr(model.config, "decoder_start_token_id"):  # encoder-decoder: the encoder's
            model(input_ids=x, decoder_input_ids=x[:, :1])   # blocks are the features
        else:
            model(input_ids=x)


def check_interface(model: Any, input_shape: Sequence[int] | None = None) -> InterfaceReport:
    """Run the downstream-platform contract on ``model`` with one random input.

    Checks that ``get_depth()`` is a positive int, that every layer's
    ``get_features_shape(input_shape, i)`` equals the shape (less the batch) of the feature
    ``fetch_features()`` returns after a forward pass, and that ``is_hierarchical_features()``
    agrees with the shapes (they differ across layers exactly when it is true).

    Args:
        model: a built model implementing ``BigModel4DownstreamInterface``.
        input_shape: one sample's shape; default :func:`default_input_shape`.

    Returns:
        An :class:`InterfaceReport` (its ``table()`` is what ``validate`` prints).

    Raises:
        PackageError: the model does not implement the interface, or any check failed (the
            message carries the table).

    Example:
        >>> print("\\n".join(check_interface(model, (3, 224, 224)).table()))
    """
    from model_downstream_interface import BigModel4DownstreamInterface

    name = type(model).__name__
    if not isinstance(model, BigModel4DownstreamInterface):
        raise PackageError(f"{name} does not implement model_downstream_interface."
                           "BigModel4DownstreamInterface; subclass it in the package's model")
    shape = tuple(input_shape) if input_shape is not None else default_input_shape(model)
    depth = model.get_depth()
    if isinstance(depth, bool) or not isinstance(depth, int) or depth <= 0:
        raise PackageError(f"{name}.get_depth() returned {depth!r}; it must be the number of "
                           "feature layers, a positive int")
    try:
        declared = [tuple(model.get_features_shape(shape, i)) for i in range(depth)]
    except Exception as err:
        raise PackageError(f"{name}.get_features_shape({shape}, i) failed: "
                           f"{type(err).__name__}: {err}; pass the shape of one input sample "
                           "the model takes (--input-shape)") from err
    model.register_features_buffer_by_layer_indexes(list(range(depth)))
    try:
        try:
            _run(model, _random_input(model, shape))
        except Exception as err:
            raise PackageError(f"running {name} on one random input of shape (1, "
                               f"{', '.join(map(str, shape))}) failed: {type(err).__name__}: "
                               f"{err}") from err
        fetched = [tuple(t.shape[1:]) for t in model.fetch_features()]
    finally:
        model.register_features_buffer_by_layer_indexes([])
    if len(fetched) != depth:
        raise PackageError(f"{name}.fetch_features() returned {len(fetched)} features for "
                           f"{depth} registered layers")
    report = InterfaceReport(name, shape, depth, bool(model.is_hierarchical_features()),
                             [LayerCheck(i, d, f) for i, (d, f) in
                              enumerate(zip(declared, fetched))])
    bad = [c.index for c in report.layers if not c.ok]
    if bad:
        raise PackageError(f"{name}: declared feature shapes differ from the fetched features "
                           f"at layer(s) {bad}:\n" + "\n".join(report.table()))
    varies = len(set(declared)) > 1
    if varies != report.hierarchical:
        raise PackageError(
            f"{name}.is_hierarchical_features() is {report.hierarchical}, but the feature "
            f"shapes {'change' if varies else 'stay the same'} across layers; make it return "
            f"{varies}")
    return report


def _card_name(directory: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", directory.resolve().name).strip("-.") or "model"


def package_card(directory: str | os.PathLike, *, model: Any = None,
                 fields: dict[str, Any] | None = None) -> str:
    """The card text for a package that has no ``README.md``.

    Args:
        directory: the package directory (its files are listed with size and sha256).
        model: the built model, if the caller built it: the body is its
            ``get_description()``, the task its ``task``, the architecture its config's
            ``model_type``.
        fields: card fields that win over the defaults (``license``, ``author``, ``tasks``...).

    Returns:
        Card text that :func:`hubloader.catalogue.cards.parse_card` accepts.

    Raises:
        CardError: ``fields`` holds a bad value.
    """
    from ..catalogue.cards import card_text, parse_card
    from ..catalogue.cards import file_entries

    d = Path(directory)
    meta: dict[str, Any] = {"name": _card_name(d), "tasks": [getattr(model, "task", "base")],
                            "license": "other", "author": "unknown", "framework": "PyTorch"}
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    if isinstance(model_type, str) and model_type:
        meta["architecture"] = model_type
    if (d / "hubconf.py").is_file():
        meta["tags"] = ["downstream-platform"]
    meta.update(fields or {})
    meta["files"] = file_entries(d)
    description = ""
    if model is not None and hasattr(model, "get_description"):
        description = str(model.get_description() or "").strip()
        description = "\n".join(line.strip() for line in description.splitlines()).strip()
    if not description:
        description = ("A downstream-platform package; its description comes from its code's "
                       "get_description() (pack it with trust_remote_code to include it).")
    body = f"# {meta['name']}\n\n{description}\n"
    text = card_text(meta, body)
    parse_card(text, where=str(d / settings.CARD_NAME))  # never write a card we would refuse
    return text


def build_package_model(directory: str | os.PathLike, *, trust_remote_code: bool | str = False,
                        entry: str | None = None) -> Any:
    """The model of a package directory, or ``None`` when its code may not run.

    A plain model directory is built by hubloader (no foreign code runs); a code-carrying
    package only with ``trust_remote_code``, through its ``entry`` (``hubconf.py`` callable,
    default ``BIG_PRETRAINED_MODEL``).

    Raises:
        PackageError, ConfigError, WeightsError, WeightsMismatchError: building failed.
    """
    from ..load.remote_code import find_code_entry, load_custom_model

    d = Path(directory)
    if find_code_entry(d) is None:
        from ..load.modeling import BaseModel

        return BaseModel.from_pretrain(str(d), strict=True)
    if not trust_remote_code:
        return None
    return load_custom_model(d, trust_remote_code=trust_remote_code, entry_name=entry)
