"""``hubloader validate``: check a model directory, a package zip, or a card file, and say
what was checked.

Checks, in order (the first failure raises): the zip's members (via
:mod:`hubloader.packages.packaging`), required files, the card's schema, the card's ``files`` list
against the files (size and sha256), the config's schema, the code's dependencies
(``hubconf.py`` / ``entry_*``; read, never run), and that the weights load strictly into the
declared class, and that the model keeps the downstream platform's interface contract (one
random input; every declared feature shape against the fetched feature; a per-layer table).
Custom code is only run with ``trust_remote_code``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .. import settings
from ..catalogue.cards import load_card
from ..errors import ConfigError, IntegrityError, ModelNotFoundError, PackageError
from ..hub.zips import local_package
from ..names import safe_join

__all__ = ["ValidationReport", "validate"]

logger = logging.getLogger(__name__)


@dataclass
class ValidationReport:
    """What :func:`validate` checked (``checks``) and noticed without failing (``warnings``)."""

    path: Path
    checks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return self.checks + [f"warning: {w}" for w in self.warnings]


def validate(path: str | os.PathLike, *, trust_remote_code: bool | str = False,
             require_card: bool | None = None, entry: str | None = None,
             input_shape: Sequence[int] | None = None) -> ValidationReport:
    """Validate a model directory, a ``.zip`` package or a card (``.md``) file.

    Args:
        path: what to check.
        trust_remote_code: load a code-carrying package's model (runs its code); without it
            the code's dependencies and ``param_file`` are checked but nothing runs.
        require_card: a missing ``README.md`` card is an error (default: for zips; a plain
            directory, e.g. a Hugging Face download, only gets a warning). A ``hubconf.py``
            package needs none: the downstream platform's layout has no README.
        entry: the ``hubconf.py`` entry to build (default ``BIG_PRETRAINED_MODEL``).
        input_shape: one input sample's shape for the interface run (default: the card's
            ``input-shape``, else what the model's config implies, else ``(3, 224, 224)``).

    Returns:
        A :class:`ValidationReport`.

    Raises:
        PackageError, CardError, ConfigError, IntegrityError, WeightsError,
        WeightsMismatchError, UntrustedCodeError: the first problem found.
        ModelNotFoundError: ``path`` does not exist.

    Example:
        >>> print("\\n".join(validate("model.zip").lines()))
    """
    p = Path(path).expanduser()
    report = ValidationReport(p)
    if p.is_file() and p.suffix.lower() == ".zip":
        from .packaging import extract_zip, package_root

        with tempfile.TemporaryDirectory(prefix="hubloader-validate-") as tmp:
            s = extract_zip(p, tmp)
            report.checks.append(
                f"zip ok: {s.members} files, {s.total_size:,} bytes inflated, worst ratio "
                f"{s.max_ratio:.1f}x (no absolute or '..' paths, links, duplicates)")
            _validate_dir(package_root(tmp), report, trust_remote_code=trust_remote_code,
                          require_card=True if require_card is None else require_card,
                          entry=entry, input_shape=input_shape)
        return report
    if p.is_file():
        card = load_card(p)
        report.checks.append(f"card ok: {card.name} ({card.architecture}; tasks "
                             f"{', '.join(card.tasks)})")
        return report
    if not p.is_dir():
        raise ModelNotFoundError(f"{p} is neither a model directory nor a card file "
                                 "(nor a .zip package)")
    _validate_dir(local_package(p), report, trust_remote_code=trust_remote_code,
                  require_card=bool(require_card), entry=entry, input_shape=input_shape)
    return report


def _validate_dir(d: Path, report: ValidationReport, *, trust_remote_code,
                  require_card: bool, entry: str | None, input_shape) -> None:
    from ..load.remote_code import find_code_entry

    has_card = (d / settings.CARD_NAME).is_file()
    code = find_code_entry(d)  # parses config.json / hubconf.py without running anything
    if not has_card and require_card and (code is None or code.kind != "hubconf"):
        raise PackageError(f"{d} has no {settings.CARD_NAME}: a package needs a model card "
                           "(save_pretrained writes one; 'hubloader pack' adds one)")
    if code is None and not (d / settings.CONFIG_NAME).is_file():
        raise PackageError(f"{d} has neither {settings.CONFIG_NAME} nor hubconf.py: nothing "
                           "says how to build the model")
    report.checks.append("required files ok: " + ", ".join(
        n for n in (settings.CARD_NAME, settings.CONFIG_NAME, "hubconf.py") if (d / n).is_file()))
    card = None
    if has_card:
        card = load_card(d)
        arch = card.architecture or "architecture from the config"
        report.checks.append(f"card ok: {card.name} ({arch}; tasks {', '.join(card.tasks)}; "
                             f"license {card.license})")
        _check_card_files(d, card, report)
    else:
        report.warnings.append(f"no {settings.CARD_NAME} model card: fine to load; "
                               "'hubloader pack' writes one into the zip")
    shape = input_shape if input_shape is not None else (card.input_shape if card else None)
    if code is None:
        _check_native(d, card, report, input_shape=shape)
    else:
        _check_code_package(d, code, report, trust_remote_code=trust_remote_code,
                            entry=entry, input_shape=shape)


def _check_interface(model, report: ValidationReport, input_shape) -> None:
    from .downstream import check_interface

    r = check_interface(model, input_shape)
    report.checks.append(
        f"interface ok: {r.model_class}, depth {r.depth}, hierarchical {r.hierarchical}, one "
        f"random input of shape {r.input_shape}; declared feature shapes equal the fetched ones")
    report.checks.extend(f"  {line}" for line in r.table())


def _check_card_files(d: Path, card, report: ValidationReport) -> None:
    from ..files import sha256_file
    from ..catalogue.cards import file_entries

    if not card.files:
        report.warnings.append("the card lists no files (no sizes or sha256 to verify)")
        return
    for f in card.files:
        p = d / f.path
        if not p.is_file():
            raise PackageError(f"the card lists {f.path!r} but {d} lacks it; add the file or "
                               "re-save the card")
        if f.size is not None and p.stat().st_size != f.size:
            raise IntegrityError(f"{f.path}: the card says {f.size:,} bytes, the file has "
                                 f"{p.stat().st_size:,}; re-save the card or fix the file",
                                 path=f.path)
        if f.sha256 is not None:
            actual = sha256_file(p)
            if actual != f.sha256:
                raise IntegrityError(f"{f.path}: sha256 {actual} differs from the card's "
                                     f"{f.sha256}; the file changed after the card was written",
                                     path=f.path, expected=f.sha256, actual=actual)
    listed = {f.path for f in card.files}
    unlisted = [e["path"] for e in file_entries(d) if e["path"] not in listed]
    if unlisted:
        report.warnings.append(f"file(s) not in the card: {', '.join(unlisted)}")
    report.checks.append(f"files ok: {len(card.files)} listed, sizes and sha256 match")


def _check_native(d: Path, card, report: ValidationReport, *, input_shape) -> None:
    from ..load.modeling import BaseModel
    from ..load.plan import plan_load

    config = plan_load(d / settings.CONFIG_NAME, requested=BaseModel).config
    if config is None:  # a config file is always read natively
        raise PackageError(f"{d}: its config.json could not be read")
    if card is not None and card.architecture and card.architecture != config.model_type:
        raise ConfigError(f"the card's architecture {card.architecture!r} differs from "
                          f"config.json's model_type {config.model_type!r}; make them agree")
    report.checks.append(f"config ok: {type(config).__name__} (model_type {config.model_type})")
    model = BaseModel.from_pretrain(str(d), strict=True)
    r = model.load_report
    if r is None:  # from_pretrain always sets it on a native model
        raise PackageError(f"{d}: the model loaded without a load report")
    report.checks.append(f"weights ok: {r.num_tensors} tensors, {r.num_bytes:,} bytes from "
                         f"{', '.join(r.files)} into {type(model).__name__} (strict)")
    _check_interface(model, report, input_shape)


def _check_code_package(d: Path, code, report: ValidationReport, *, trust_remote_code,
                        entry: str | None, input_shape) -> None:
    from model_downstream_interface import BigModel4DownstreamInterface

    from ..load.remote_code import check_dependencies, check_module_names, load_custom_model
    from ..load.weights import read_safetensors, read_torch_bin

    rel = code.path.relative_to(d).as_posix()
    report.checks.append(f"config ok: code package ({code.kind}: {rel}"
                         + (f", class {code.entry_class}" if code.entry_class else "")
                         + (f", entry {entry}" if entry else "") + ")")
    check_dependencies(code)
    report.checks.append("dependencies ok: " + (", ".join(code.dependencies) or "none declared")
                         + " importable (checked with find_spec; nothing imported)")
    names = check_module_names(code)
    if names:
        report.checks.append(f"module names ok: {', '.join(names)} (no installed module of "
                             "that name)")
    if code.param_file:
        path = safe_join(d, code.param_file)
        if not path.is_file():
            raise PackageError(f"param_file {code.param_file!r} is missing from {d}")
        state = read_safetensors(path) if path.suffix == ".safetensors" else read_torch_bin(path)
        report.checks.append(f"param file ok: {code.param_file}, {len(state)} tensors "
                             "(read safely)")
    if trust_remote_code:
        model = load_custom_model(d, trust_remote_code=trust_remote_code, entry_name=entry)
        if getattr(type(model), "hubloader_resource_dir_init", False):
            # AlphaMed's AutoModel wraps its network; the platform interface is not its contract
            params = getattr(getattr(model, "model", None), "parameters", None)
            n = sum(p.numel() for p in params()) if callable(params) else 0
            report.checks.append(f"AutoModel ok: {type(model).__name__} built by the package's "
                                 f"code from {code.param_file}"
                                 + (f", {n:,} parameters" if n else ""))
            return
        n = sum(p.numel() for p in model.parameters())
        report.checks.append(f"weights ok: {type(model).__name__} built by the package's code, "
                             f"{n:,} parameters")
        if isinstance(model, BigModel4DownstreamInterface):
            _check_interface(model, report, input_shape)
        else:
            report.warnings.append(f"{type(model).__name__} does not implement "
                                   "BigModel4DownstreamInterface: the downstream platform "
                                   "cannot take its features")
    else:
        report.warnings.append(f"the package's code ({rel}) was not run; pass "
                               "--trust-remote-code to build the model and load its weights")
