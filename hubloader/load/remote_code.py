"""Model packages that carry their own code (the downstream platform's ``hubconf.py``,
AlphaMed's ``entry_file``/``entry_module``), run only when trusted.

Two shapes are recognised:

- ``hubconf.py`` at the package root with a ``dependencies`` list and an entry: the
  ``BIG_PRETRAINED_MODEL`` class (its ``from_pretrained()`` is called) or a named callable;
- ``config.json`` with exactly one of ``entry_file`` (a ``.py`` file) / ``entry_module``
  (a dotted module in the package), plus ``entry_class`` and ``param_file``; hubloader
  builds the class and loads ``param_file`` itself, safely.

Nothing of the package is executed unless ``trust_remote_code`` is true (or is the sha256 of
the code, pinning it). ``dependencies`` are read with :mod:`ast` and checked with
:func:`importlib.util.find_spec` before any import. The code is hashed once; the exact bytes
hashed are the bytes executed, and a copy is pinned under ``<hub_home>/code/<sha256>/``.
Modules import under names unique to the digest, so two packages whose folders share a name
(``swin_transformer_tiny``) never see each other's modules.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import json
import logging
import os
import shlex
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .. import settings
from ..errors import ConfigError, PackageError, UntrustedCodeError
from ..files import building_dir
from ..hub.zips import local_package
from ..names import safe_join

if TYPE_CHECKING:
    import torch

__all__ = ["CodeEntry", "find_code_entry", "read_dependencies", "check_dependencies",
           "check_module_names",
           "code_digest", "import_entry", "load_custom_model", "HUBCONF_NAME"]

logger = logging.getLogger(__name__)

HUBCONF_NAME = "hubconf.py"
#: the config.json fields that name a package's code (exactly one of them)
ENTRY_FIELDS = ("entry_file", "entry_module")
DEFAULT_HUBCONF_ENTRY = "BIG_PRETRAINED_MODEL"
_IMPORT_LOCK = threading.RLock()
#: module forms other than source that Python's import system would load from a folder
_COMPILED_SUFFIXES = tuple(importlib.machinery.BYTECODE_SUFFIXES
                           + importlib.machinery.EXTENSION_SUFFIXES + [".pyo", ".pyd"])


@dataclass(frozen=True)
class CodeEntry:
    """Where a package's code starts.

    Attributes:
        kind: ``"hubconf"``, ``"entry_file"`` or ``"entry_module"``.
        root: the package directory.
        path: the file that would run first.
        module: the module to import (``"hubconf"``, ``"my_model"``, ``"my.model"``).
        entry_class: the class to build (``entry_*`` packages).
        param_file: the weights file, relative to ``root`` (``entry_*`` packages).
        dependencies: top-level packages the code needs.
        config: the ``config.json`` contents (``entry_*`` packages).
    """

    kind: str
    root: Path
    path: Path
    module: str
    entry_class: str | None = None
    param_file: str | None = None
    dependencies: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict, compare=False)


def read_dependencies(hubconf: Path) -> tuple[str, ...]:
    """The ``dependencies = [...]`` list of a ``hubconf.py``, read without running it.

    Raises:
        PackageError: the file does not parse, or ``dependencies`` is not a literal list of
            strings.
    """
    try:
        tree = ast.parse(hubconf.read_bytes(), filename=str(hubconf))
    except (SyntaxError, ValueError) as err:
        raise PackageError(f"{hubconf} is not valid Python ({err}); fix it before packaging") from err
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else [])
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None and any(
                isinstance(t, ast.Name) and t.id == "dependencies" for t in targets):
            try:
                deps = ast.literal_eval(node.value)
            except ValueError as err:
                raise PackageError(f"{hubconf}: 'dependencies' must be a literal list of package "
                                   "names, e.g. dependencies = [\"torch\"]") from err
            if not isinstance(deps, (list, tuple)) or not all(isinstance(d, str) for d in deps):
                raise PackageError(f"{hubconf}: 'dependencies' must be a list of strings")
            return tuple(deps)
    return ()


def _config_entry(root: Path, data: dict[str, Any]) -> CodeEntry | None:
    has_file, has_module = (field in data for field in ENTRY_FIELDS)
    where = root / settings.CONFIG_NAME
    if not (has_file or has_module):
        half = [k for k in ("entry_class", "param_file") if k in data]
        if half and "model_type" not in data:  # an AlphaMed config missing its entry
            raise ConfigError(f"{where} has {' and '.join(half)} but neither 'entry_file' nor "
                              "'entry_module': an AlphaMed package needs exactly one of them "
                              "(the .py file or the dotted module holding 'entry_class'), plus "
                              "'entry_class' and 'param_file'")
        return None
    if has_file == has_module:
        raise ConfigError(f"{where}: give exactly one of 'entry_file' and 'entry_module', not both")
    for key in ("entry_class", "param_file"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ConfigError(f"{where}: '{key}' is required with entry_file/entry_module and "
                              "must be a string")
    deps = data.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise ConfigError(f"{where}: 'dependencies' must be a list of package names")
    if has_file:
        rel = data["entry_file"]
        if not isinstance(rel, str) or not rel.endswith(".py"):
            raise ConfigError(f"{where}: 'entry_file' must name a .py file, got {rel!r}")
        path = safe_join(root, rel)
        module = rel[:-3].replace("\\", "/").replace("/", ".")
        kind = "entry_file"
    else:
        module = data["entry_module"]
        if not isinstance(module, str) or not all(p.isidentifier() for p in module.split(".")):
            raise ConfigError(f"{where}: 'entry_module' must be a dotted module name like "
                              f"'my.model', got {module!r}")
        base = root / module.replace(".", "/")
        path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        kind = "entry_module"
    if not path.is_file():
        raise PackageError(f"{where}: {kind} {data.get(kind)!r} points at {path}, which does not "
                           "exist; add the file or fix config.json")
    return CodeEntry(kind, root, path, module, data["entry_class"], data["param_file"],
                     tuple(deps), data)


def find_code_entry(model_dir: str | os.PathLike) -> CodeEntry | None:
    """The package's code entry, or ``None`` for a plain (code-free) model directory.
    Reads files only; runs nothing.

    Raises:
        ConfigError: ``config.json`` names both or neither-but-half of the entry fields.
        PackageError: the entry file is missing or ``hubconf.py`` does not parse.
    """
    root = local_package(model_dir)
    hubconf = root / HUBCONF_NAME
    if hubconf.is_file():
        return CodeEntry("hubconf", root, hubconf, "hubconf",
                         dependencies=read_dependencies(hubconf))
    cfg = root / settings.CONFIG_NAME
    if cfg.is_file():
        from .config import read_config_file

        return _config_entry(root, read_config_file(cfg))
    return None


def check_dependencies(entry: CodeEntry) -> None:
    """Raise :class:`PackageError` naming every dependency that cannot be imported (found
    with :func:`importlib.util.find_spec` on the top-level name; nothing is imported)."""
    missing = []
    for dep in entry.dependencies:
        top = dep.strip().split(".")[0]
        try:
            found = importlib.util.find_spec(top) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(dep)
    if missing:
        # the names come from the package: quoted, so a pasted command installs, and runs, nothing else
        raise PackageError(f"{entry.path} needs package(s) that are not installed: "
                           f"{', '.join(map(repr, missing))}; install them "
                           f"(pip install {' '.join(map(shlex.quote, missing))})")


def _code_files(root: Path) -> dict[str, bytes]:
    """The package's ``.py`` files, after checking that it ships no module in another form:
    a ``.pyc`` or an extension module is importable too, but its bytes are not in the digest
    (the pin would not cover it), so such a package is refused."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if any(part.startswith(".") or part == "__pycache__" for part in rel.split("/")):
            continue
        if rel.endswith(_COMPILED_SUFFIXES):
            raise PackageError(f"{p} is compiled code, which the digest cannot cover; ship the "
                               "package's modules as .py source only (remove it)")
        if not rel.endswith(".py"):
            continue
        if p.is_symlink():
            raise PackageError(f"{p} is a symlink; package code must be real files")
        out[rel] = p.read_bytes()
    return out


def code_digest(sources: dict[str, bytes]) -> str:
    """sha256 over the sorted ``(path, sha256(content))`` pairs of a package's ``.py`` files."""
    h = hashlib.sha256()
    for rel in sorted(sources):
        h.update(rel.encode() + b"\0" + hashlib.sha256(sources[rel]).hexdigest().encode() + b"\n")
    return h.hexdigest()


def _pin(digest: str, sources: dict[str, bytes], origin: Path) -> Path:
    """Keep a copy of the trusted code at ``<hub_home>/code/<digest>/`` (atomic)."""
    pinned = settings.hub_home() / "code" / digest
    if pinned.is_dir():
        return pinned
    with building_dir(pinned) as tmp:
        for rel, data in sources.items():
            target = tmp / "files" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (tmp / "manifest.json").write_text(json.dumps({
            "sha256": digest, "origin": str(origin),
            "files": {rel: hashlib.sha256(d).hexdigest() for rel, d in sources.items()}},
            indent=2) + "\n")
    logger.info("pinned code of %s as %s", origin, digest)
    return pinned


class _VerifiedSourceFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves a package's own modules from the bytes that were hashed (no re-read)."""

    def __init__(self, root: Path, sources: dict[str, bytes]):
        self.root, self.sources = root, sources
        self.packages = {"/".join(rel.split("/")[:i]) for rel in sources
                         for i in range(1, rel.count("/") + 1)}
        self.tops = _local_tops(sources)

    def find_spec(self, fullname, path=None, target=None):
        rel = fullname.replace(".", "/")
        if fullname.split(".")[0] in self.tops and rel + ".py" not in self.sources \
                and rel not in self.packages:
            # the package's own name space is served from the hashed bytes only: no other
            # finder may load a module of it from the folder
            raise ModuleNotFoundError(f"{fullname} is not a module of the package's pinned "
                                      "code", name=fullname)
        if rel + ".py" in self.sources:
            return importlib.util.spec_from_file_location(
                fullname, self.root / f"{rel}.py", loader=self, submodule_search_locations=None)
        if rel in self.packages:
            spec = importlib.util.spec_from_file_location(
                fullname, self.root / rel / "__init__.py", loader=self,
                submodule_search_locations=[str(self.root / rel)])
            return spec
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module: ModuleType) -> None:
        origin = str(module.__spec__.origin if module.__spec__ else module.__file__)
        rel = Path(origin).relative_to(self.root).as_posix()
        source = self.sources.get(rel, b"")  # a folder without __init__.py: empty package
        exec(compile(source, origin, "exec"), module.__dict__)


def check_module_names(entry: CodeEntry) -> list[str]:
    """The package's top-level module names (its folders and ``.py`` files), after checking
    that none is an installed module: the package's code imports its own folder by name, so a
    folder called ``torch`` would hide torch from it. Nothing is imported.

    Raises:
        PackageError: a name is taken; the message says to rename the folder uniquely.
    """
    names = sorted(_local_tops(_code_files(entry.root)) - {entry.module.split(".")[0]})
    taken = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name) if name.isidentifier() else None
        except (ImportError, ValueError):
            spec = None
        if spec is not None and not str(spec.origin or "").startswith(str(entry.root)):
            taken.append(name)
    if taken:
        raise PackageError(f"{entry.root}: the package's module name(s) {', '.join(taken)} are "
                           "already installed modules; give the package folder a unique name "
                           "(e.g. swin_transformer_tiny_v2)")
    return names


def _local_tops(sources: dict[str, bytes]) -> set[str]:
    return {rel.split("/")[0].removesuffix(".py") for rel in sources}


def import_entry(entry: CodeEntry, *, trust_remote_code: bool | str = False) -> ModuleType:
    """Import a package's entry module — only when trusted.

    Args:
        entry: from :func:`find_code_entry`.
        trust_remote_code: ``True`` runs the code; a sha256 string runs it only if the code's
            digest (:func:`code_digest`) equals it.

    Returns:
        The entry module, registered as ``hubloader_remote_<digest[:16]>.<module>``.

    Raises:
        UntrustedCodeError: not trusted, or the digest differs from the pinned one. Nothing ran.
        PackageError: a dependency is missing (checked before import), or the import failed.
    """
    sources = _code_files(entry.root)
    digest = code_digest(sources)
    if trust_remote_code is not True:
        if isinstance(trust_remote_code, str) and trust_remote_code:
            if trust_remote_code.lower() != digest:
                raise UntrustedCodeError(
                    f"the code of {entry.root} has sha256 {digest}, not the pinned "
                    f"{trust_remote_code}; it was not run. Review the change, then pin the new "
                    "digest or pass trust_remote_code=True")
        else:
            raise UntrustedCodeError(
                f"{entry.root} ships code: loading it would run {entry.path}. It was not run. "
                "Read the code, then pass trust_remote_code=True (or its sha256 "
                f"{digest}) to allow it")
    check_dependencies(entry)
    _pin(digest, sources, entry.root)
    unique = f"hubloader_remote_{digest[:16]}"
    full = f"{unique}.{entry.module}"
    with _IMPORT_LOCK:
        if full in sys.modules:
            return sys.modules[full]
        tops = _local_tops(sources)
        stashed = {n: sys.modules.pop(n) for n in list(sys.modules) if n.split(".")[0] in tops}
        finder = _VerifiedSourceFinder(entry.root, sources)
        sys.meta_path.insert(0, finder)
        try:
            module = importlib.import_module(entry.module)
        except Exception as err:
            raise PackageError(f"importing {entry.path} failed: {type(err).__name__}: {err}") from err
        finally:
            sys.meta_path.remove(finder)
            sys.modules.setdefault(unique, ModuleType(unique))
            for name in [n for n in list(sys.modules) if n.split(".")[0] in tops]:
                sys.modules[f"{unique}.{name}"] = sys.modules.pop(name)
            sys.modules.update(stashed)
    logger.info("imported %s (sha256 %s) as %s", entry.path, digest, full)
    return module


def _instantiate(cls: type, config: dict[str, Any]):
    try:
        params = set(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        params = set()
    return cls(config=config) if "config" in params else cls()


def load_custom_model(model_dir: str | os.PathLike, *, trust_remote_code: bool | str = False,
                      entry_name: str | None = None, entry_args: tuple = (),
                      device: "str | torch.device" = "cpu", strict: bool = True,
                      entry_kwargs: dict[str, Any] | None = None, **kwargs: Any):
    """Build the model a code-carrying package declares.

    Args:
        model_dir: the package: a directory (relative, ``~``, a symlink) or a ``.zip``
            (see :func:`hubloader.hub.zips.local_package`).
        trust_remote_code: see :func:`import_entry`.
        entry_name: for ``hubconf.py``, the callable to use (default ``BIG_PRETRAINED_MODEL``).
        entry_args: positional arguments for the hubconf entry.
        device: where the model goes.
        strict: for ``entry_*`` packages, require ``param_file`` keys to match exactly.
        entry_kwargs: for an AlphaMed ``AutoModel`` entry class, passed to it with
            ``resource_dir``.
        **kwargs: passed to the hubconf entry.

    Returns:
        The ``torch.nn.Module`` in eval mode, with ``model_dir`` set; for an entry class
        marked ``hubloader_resource_dir_init`` (AlphaMed's ``AutoModel``), the instance
        ``entry_class(resource_dir=<package>, **entry_kwargs)``, which loads its own
        ``param_file``.

    Raises:
        UntrustedCodeError, PackageError, ConfigError, WeightsError, WeightsMismatchError.
    """
    from torch import nn

    entry = find_code_entry(model_dir)
    if entry is None:
        raise PackageError(f"{model_dir} carries no code (no hubconf.py, no entry_file/"
                           "entry_module in config.json)")
    module = import_entry(entry, trust_remote_code=trust_remote_code)
    if entry.kind == "hubconf":
        name = entry_name or DEFAULT_HUBCONF_ENTRY
        obj = getattr(module, name, None)
        if obj is None or not callable(obj):
            raise PackageError(f"{entry.path} defines no callable {name!r}; set "
                               f"{DEFAULT_HUBCONF_ENTRY} = YourModelClass or name the entry")
        if isinstance(obj, type) and hasattr(obj, "from_pretrained"):
            model = obj.from_pretrained(*entry_args, **kwargs)
        else:
            model = obj(*entry_args, **kwargs)
    else:
        cls = getattr(module, entry.entry_class or "", None)
        if not isinstance(cls, type):
            raise PackageError(f"{entry.path} defines no class {entry.entry_class!r} "
                               "(config.json 'entry_class')")
        if getattr(cls, "hubloader_resource_dir_init", False):
            # AlphaMed's AutoModel wraps its network and reads its own param_file
            return cls(resource_dir=entry.root, **(entry_kwargs or {}))
        model = _instantiate(cls, entry.config)
        model = _load_param_file(model, entry, strict=strict)
    if not isinstance(model, nn.Module):
        raise PackageError(f"the entry of {entry.path} returned {type(model).__name__}, "
                           "not a torch.nn.Module")
    model = model.to(device).eval()
    setattr(model, "model_dir", entry.root)
    return model


def _load_param_file(model, entry: CodeEntry, *, strict: bool):
    from ..errors import WeightsMismatchError
    from .weights import read_safetensors, read_torch_bin

    path = safe_join(entry.root, entry.param_file or "")
    if not path.is_file():
        raise PackageError(f"param_file {entry.param_file!r} is missing from {entry.root}")
    state = read_safetensors(path) if path.suffix == ".safetensors" else read_torch_bin(path)
    result = model.load_state_dict(state, strict=False)
    if strict and (result.missing_keys or result.unexpected_keys):
        raise WeightsMismatchError(
            f"{path} does not fit {type(model).__name__}: missing {sorted(result.missing_keys)}, "
            f"unexpected {sorted(result.unexpected_keys)}; fix param_file or entry_class",
            missing=result.missing_keys, unexpected=result.unexpected_keys)
    return model
