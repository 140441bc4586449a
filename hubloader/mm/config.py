"""mmpretrain-style configs (``.py``, ``.json``, ``.yaml``) read as data, never executed.

A ``.py`` config is parsed with :mod:`ast` and evaluated by a small interpreter that knows
only what real mmpretrain configs contain: literals, ``dict(...)``/``list(...)``/``tuple(...)``,
names bound earlier in the file or inherited from ``_base_``, mmengine's ``{{_base_.x}}``
placeholders, attribute access into a dict bound earlier (``_base_.model``, ``model.head``),
subscripts and slices, arithmetic, comparisons and the conditional expression, list and dict
comprehensions and f-strings over that data, and a few pure builtins (``round``, ``min``,
``max``, ``len``, ``range``...). Anything else — an import, a call of any other function or
method, a lambda — is a
:class:`~hubloader.errors.ConfigError` naming the file and line; nothing of the file runs.

``_base_`` (a path or a list of paths relative to the file) is merged the way mmengine merges:
dicts recursively, lists and other values replaced, ``_delete_=True`` replacing a dict
wholesale. A cycle, a missing base or a base outside the config tree is a ``ConfigError``.

Example:
    >>> cfg = Config.fromfile("configs/resnet/resnet18_8xb32_in1k.py")   # doctest: +SKIP
    >>> cfg.model.backbone.depth                                         # doctest: +SKIP
    18
"""

from __future__ import annotations

import ast
import copy
import json
import operator
import os
import re
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError

__all__ = ["Config", "ConfigDict", "merge_configs"]

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"
#: how deep ``_base_`` chains may go; a deeper chain is almost surely a mistake
_MAX_DEPTH = 32
#: how large a constant a config may compute (``2 ** 10 ** 10`` would hang the reader)
_MAX_NUMBER = 2 ** 64
_MAX_SEQUENCE = 1_000_000


class ConfigDict(dict):
    """A dict whose keys are also attributes (``cfg.model.backbone``), as mmengine's."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}; keys: {sorted(self)}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __deepcopy__(self, memo: dict) -> "ConfigDict":
        return type(self)((k, copy.deepcopy(v, memo)) for k, v in self.items())

    def to_dict(self) -> dict:
        """A plain ``dict`` copy (nested ``ConfigDict`` s become dicts)."""
        return _plain(self)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


def _attr_dicts(value: Any) -> Any:
    if isinstance(value, dict):
        return ConfigDict((k, _attr_dicts(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_attr_dicts(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_attr_dicts(v) for v in value)
    return value


class Config(ConfigDict):
    """A merged config: a mapping with attribute access, plus ``filename``.

    Build one with :meth:`fromfile`, or from a dict (``Config(dict(model=...))``).
    """

    filename: str | None

    def __init__(self, data: Any = (), *, filename: str | None = None):
        super().__init__()
        dict.__setattr__(self, "filename", filename)
        for key, value in dict(data).items():
            self[key] = _attr_dicts(value)

    @classmethod
    def fromfile(cls, path: str | os.PathLike, *, root: str | os.PathLike | None = None
                 ) -> "Config":
        """Read ``path`` and every ``_base_`` it names, merged.

        Args:
            path: a ``.py``, ``.json``, ``.yaml`` or ``.yml`` config.
            root: the config tree's top; a ``_base_`` outside it is refused. Default: the
                directory that holds ``path``'s nearest ``_base_`` ancestor chain, i.e. the
                parent of ``path``'s directory (mmpretrain's ``configs/<family>/x.py`` reaching
                ``configs/_base_/...``).

        Returns:
            The merged :class:`Config`.

        Raises:
            ConfigError: a missing or unreadable file, a construct the reader refuses (the
                message names file and line), a ``_base_`` cycle or a base outside ``root``,
                duplicate keys among bases, or a merge of a dict into a non-dict.

        Example:
            >>> Config.fromfile("model.py").model.type                  # doctest: +SKIP
            'ImageClassifier'
        """
        file = Path(path).resolve()
        top = Path(root).resolve() if root is not None else file.parent.parent
        data = _load_tree(file, top, ())
        return cls(data, filename=str(file))

    def to_dict(self) -> dict:
        return _plain(self)


# -- the tree ----------------------------------------------------------------------------------
def _load_tree(file: Path, top: Path, chain: tuple[Path, ...]) -> dict:
    if file in chain:
        cycle = " -> ".join(str(p) for p in chain + (file,))
        raise ConfigError(f"_base_ cycle: {cycle}; remove one of these _base_ entries")
    if len(chain) > _MAX_DEPTH:
        raise ConfigError(f"{file}: _base_ chain deeper than {_MAX_DEPTH} files")
    if not file.is_file():
        where = f" (a _base_ of {chain[-1]})" if chain else ""
        raise ConfigError(f"config file {file} does not exist{where}; check the path")
    if file.suffix not in (".py", ".json", ".yaml", ".yml"):
        raise ConfigError(f"{file}: a config must be .py, .json, .yaml or .yml")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config {file}: {err}") from err

    bases_raw: Any
    if file.suffix == ".py":
        tree = _parse(text, file)
        bases_raw, base_line = _find_base(tree, file)
    else:
        own = _load_data(_BASE_REF.sub(lambda m: f'"{_REF_MARK}{m.group(1)}"', text), file)
        bases_raw, base_line = own.pop(BASE_KEY, None), 1
    base_files = _base_paths(bases_raw, file, top, base_line)

    base: dict = {}
    for bf in base_files:
        part = _load_tree(bf, top, chain + (file,))
        dup = set(part) & set(base)
        if dup:
            raise ConfigError(f"{file}:{base_line}: the bases define {sorted(dup)} more than once; "
                              "a key may come from one base only")
        base.update(part)

    if file.suffix == ".py":
        own = _Reader(file, base).run(tree)
    else:
        own = _substitute_base_refs(own, base, file)
    return merge_configs(own, base, where=str(file))


def _base_paths(raw: Any, file: Path, top: Path, line: int) -> list[Path]:
    if raw is None:
        return []
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"{file}:{line}: _base_ must be a path or a list of paths, got {raw!r}")
    out = []
    for item in items:
        p = (file.parent / item).resolve()
        if not p.is_relative_to(top):
            raise ConfigError(f"{file}:{line}: _base_ {item!r} resolves to {p}, outside the config "
                              f"tree {top}; keep bases inside it (or pass root=)")
        out.append(p)
    return out


def _load_data(text: str, file: Path) -> dict:
    try:
        if file.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml
            data = yaml.safe_load(text)
    except ValueError as err:
        raise ConfigError(f"{file}: not valid JSON: {err}") from err
    except Exception as err:  # yaml.YAMLError; yaml is imported lazily
        raise ConfigError(f"{file}: not valid YAML: {err}") from err
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the top level must be a mapping, got {type(data).__name__}")
    return data


# -- merging -----------------------------------------------------------------------------------
def merge_configs(child: dict, base: dict, *, where: str = "config") -> dict:
    """``child`` merged into a copy of ``base``, as mmengine's ``Config._merge_a_into_b``.

    Dicts merge recursively; any other value (lists too) replaces; a child dict with
    ``_delete_=True`` replaces the base's dict wholesale.

    Raises:
        ConfigError: a child dict meets a base value that is not a dict.
    """
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, dict):
            value = dict(value)
            if key in out and not value.pop(DELETE_KEY, False):
                if not isinstance(out[key], dict):
                    raise ConfigError(f"{where}: {key!r} is a dict here but a "
                                      f"{type(out[key]).__name__} in its base; add "
                                      f"{DELETE_KEY}=True to replace it")
                out[key] = merge_configs(value, out[key], where=where)
            else:
                out[key] = value
        else:
            out[key] = value
    return out


#: ``{{_base_.a.b}}`` in JSON/YAML text, quoted or not, as mmengine finds it
_BASE_REF = re.compile(r"['\"]?\{\{\s*_base_\.([\w.]+)\s*\}\}['\"]?")
_REF_MARK = "__hubloader_base_ref__:"


def _substitute_base_refs(value: Any, base: dict, file: Path) -> Any:
    """The placeholders of ``{{_base_.a.b}}`` in JSON/YAML configs → the bases' values."""
    if isinstance(value, dict):
        return {k: _substitute_base_refs(v, base, file) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_base_refs(v, base, file) for v in value]
    if isinstance(value, str) and value.startswith(_REF_MARK):
        return _lookup(base, value[len(_REF_MARK):].split("."), file, 1)
    return value


def _lookup(base: dict, parts: list[str], file: Path, line: int) -> Any:
    cur: Any = base
    for i, part in enumerate(parts):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, (list, tuple)) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            ref = ".".join([BASE_KEY] + parts[:i + 1])
            raise ConfigError(f"{file}:{line}: {ref} is not defined by the bases")
    return copy.deepcopy(cur)


# -- the .py reader ----------------------------------------------------------------------------
def _parse(text: str, file: Path) -> ast.Module:
    try:
        return ast.parse(text, filename=str(file))
    except SyntaxError as err:
        raise ConfigError(f"{file}:{err.lineno}: not valid Python: {err.msg}") from err
    except (ValueError, RecursionError, MemoryError) as err:
        raise ConfigError(f"{file}: cannot parse: {err}") from err


def _find_base(tree: ast.Module, file: Path) -> tuple[Any, int]:
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == BASE_KEY):
            return _Reader(file, {}).value(node.value), node.lineno
    return None, 1


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {
    ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
_CONTAINERS = {"dict": dict, "list": list, "tuple": tuple}
_CONVERSIONS: dict[int, Callable[[Any], str]] = {ord("r"): repr, ord("s"): str, ord("a"): ascii}
#: pure builtins real configs call (``[round(x) for x in bgr_mean]``); nothing else is callable
_PURE: dict[str, Callable[..., Any]] = {
    "round": round, "min": min, "max": max, "abs": abs, "int": int, "float": float,
    "str": str, "bool": bool, "len": len, "sum": sum, "sorted": sorted, "range": range,
}


class _Reader:
    """Evaluates a config's statements over a whitelist of node types; nothing else runs."""

    def __init__(self, file: Path, base: dict):
        self.file = file
        self.base = base
        self.names: dict[str, Any] = {}
        self.line = 1

    def fail(self, node: ast.AST | None, what: str) -> ConfigError:
        line = getattr(node, "lineno", self.line)
        return ConfigError(f"{self.file}:{line}: {what}; a config holds data only "
                           "(literals, dict()/list()/tuple(), names defined above, arithmetic)")

    def run(self, tree: ast.Module) -> dict:
        for stmt in tree.body:
            self.line = stmt.lineno
            if isinstance(stmt, ast.Assign):
                value = self.value(stmt.value)
                for target in stmt.targets:
                    self.assign(target, value)
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                self.assign(stmt.target, self.value(stmt.value))
            elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
                current = self.name(stmt.target)
                self.names[stmt.target.id] = self.binop(stmt.op, current,
                                                        self.value(stmt.value), stmt)
            elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                continue  # a docstring or a bare string
            elif isinstance(stmt, ast.Pass):
                continue
            elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
                raise self.fail(stmt, "an import is not allowed in a config")
            else:
                raise self.fail(stmt, f"a {type(stmt).__name__} statement is not allowed")
        return {k: v for k, v in self.names.items()
                if k != BASE_KEY and not k.startswith("__")}

    def assign(self, target: ast.expr, value: Any) -> None:
        if isinstance(target, ast.Name):
            self.names[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            if not isinstance(value, (list, tuple)) or len(value) != len(target.elts):
                raise self.fail(target, "cannot unpack this value into the names")
            for t, v in zip(target.elts, value):
                self.assign(t, v)
        elif isinstance(target, ast.Subscript):
            container = self.value(target.value)
            key = self.value(target.slice)
            try:
                container[key] = value
            except (TypeError, IndexError, KeyError) as err:
                raise self.fail(target, f"cannot assign to this item ({err})") from None
        elif isinstance(target, ast.Attribute):
            container = self.value(target.value)
            if not isinstance(container, dict):
                raise self.fail(target, "attribute assignment works on dicts only")
            container[target.attr] = value
        else:
            raise self.fail(target, f"cannot assign to a {type(target).__name__}")

    def name(self, node: ast.Name) -> Any:
        if node.id in self.names:
            return self.names[node.id]
        if node.id in self.base:
            return copy.deepcopy(self.base[node.id])
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        raise self.fail(node, f"name {node.id!r} is not defined above or by the bases")

    def value(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (int, float, str, bool, type(None), complex, bytes)):
                return node.value
            raise self.fail(node, f"the constant {node.value!r} is not allowed")
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.List):
            return self.sequence(node.elts, node)
        if isinstance(node, ast.Tuple):
            return tuple(self.sequence(node.elts, node))
        if isinstance(node, ast.Dict):
            out: dict = {}
            for k, v in zip(node.keys, node.values):
                if k is None:  # {**other}
                    spread = self.value(v)
                    if not isinstance(spread, dict):
                        raise self.fail(v, "** needs a dict")
                    out.update(spread)
                else:
                    out[self.hashable(self.value(k), k)] = self.value(v)
            return out
        if isinstance(node, ast.Set):
            ref = self.base_placeholder(node)
            if ref is not None:
                return ref
            raise self.fail(node, "a set is not allowed")
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.BinOp):
            return self.binop(node.op, self.value(node.left), self.value(node.right), node)
        if isinstance(node, ast.UnaryOp):
            op = _UNARY.get(type(node.op))
            if op is None:
                raise self.fail(node, f"the operator {type(node.op).__name__} is not allowed")
            try:
                return op(self.value(node.operand))
            except TypeError as err:
                raise self.fail(node, str(err)) from None
        if isinstance(node, ast.BoolOp):
            result: Any = None
            for i, v in enumerate(node.values):
                result = self.value(v)
                if isinstance(node.op, ast.And) and not result:
                    return result
                if isinstance(node.op, ast.Or) and result:
                    return result
            return result
        if isinstance(node, ast.Compare):
            left = self.value(node.left)
            for cmp, right_node in zip(node.ops, node.comparators):
                right = self.value(right_node)
                try:
                    if not _COMPARE[type(cmp)](left, right):
                        return False
                except TypeError as err:
                    raise self.fail(node, str(err)) from None
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return self.value(node.body) if self.value(node.test) else self.value(node.orelse)
        if isinstance(node, ast.Subscript):
            container = self.value(node.value)
            key = self.slice(node.slice)
            if not isinstance(container, (dict, list, tuple, str)):
                raise self.fail(node, "only a dict, list, tuple or string can be indexed")
            try:
                return copy.deepcopy(container[key])
            except (KeyError, IndexError, TypeError) as err:
                raise self.fail(node, f"no item {key!r} ({type(err).__name__})") from None
        if isinstance(node, ast.Attribute):
            return self.attribute(node)
        if isinstance(node, (ast.ListComp, ast.DictComp)):
            return self.comprehension(node)
        if isinstance(node, ast.JoinedStr):
            return self.fstring(node)
        raise self.fail(node, f"a {type(node).__name__} expression is not allowed")

    def fstring(self, node: ast.JoinedStr) -> str:
        """``f"{name}-{size:>4}"`` over data; a format width is bounded."""
        out = []
        for part in node.values:
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                out.append(part.value)
                continue
            if not isinstance(part, ast.FormattedValue):
                raise self.fail(node, "this f-string part is not allowed")
            value = self.value(part.value)
            if not isinstance(value, (int, float, str, bool, type(None), list, tuple, dict)):
                raise self.fail(node, "an f-string formats data only")
            convert = _CONVERSIONS.get(part.conversion)
            if convert is not None:
                value = convert(value)
            spec = ""
            if isinstance(part.format_spec, ast.JoinedStr):
                spec = self.fstring(part.format_spec)
            elif part.format_spec is not None:
                raise self.fail(node, "this f-string format is not allowed")
            if any(len(run) > 4 for run in re.findall(r"\d+", spec)):
                raise self.fail(node, "an f-string width above 9999 is not allowed")
            try:
                out.append(format(value, spec))
            except (TypeError, ValueError) as err:
                raise self.fail(node, f"f-string: {err}") from None
        return "".join(out)

    def comprehension(self, node: ast.ListComp | ast.DictComp) -> Any:
        """``[f(x) for x in xs if c]`` / ``{k: v for ...}`` over data, names scoped to it."""
        saved = dict(self.names)
        items: list = []
        out: dict = {}

        def loop(i: int) -> None:
            if i == len(node.generators):
                if isinstance(node, ast.ListComp):
                    items.append(self.value(node.elt))
                else:
                    out[self.hashable(self.value(node.key), node.key)] = self.value(node.value)
                if len(items) + len(out) > _MAX_SEQUENCE:
                    raise self.fail(node, "the comprehension is too long")
                return
            gen = node.generators[i]
            if gen.is_async:
                raise self.fail(node, "async comprehensions are not allowed")
            source = self.value(gen.iter)
            if not isinstance(source, (list, tuple, str, dict)):
                raise self.fail(gen.iter, "a comprehension iterates over a list, tuple, string "
                                          "or dict only")
            for item in list(source):
                self.assign(gen.target, item)
                if all(self.value(cond) for cond in gen.ifs):
                    loop(i + 1)

        try:
            loop(0)
        finally:
            self.names = saved
        return items if isinstance(node, ast.ListComp) else out

    def sequence(self, elts: list[ast.expr], node: ast.AST) -> list:
        out: list = []
        for e in elts:
            if isinstance(e, ast.Starred):
                spread = self.value(e.value)
                if not isinstance(spread, (list, tuple)):
                    raise self.fail(e, "* needs a list or tuple")
                out.extend(spread)
            else:
                out.append(self.value(e))
        return out

    def slice(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Slice):
            parts = [None if p is None else self.value(p) for p in (node.lower, node.upper, node.step)]
            if not all(p is None or isinstance(p, int) for p in parts):
                raise self.fail(node, "slice bounds must be integers")
            return slice(*parts)
        return self.hashable(self.value(node), node)

    def hashable(self, value: Any, node: ast.AST) -> Any:
        try:
            hash(value)
        except TypeError:
            raise self.fail(node, f"a {type(value).__name__} cannot be a key") from None
        return value

    def attribute(self, node: ast.Attribute) -> Any:
        parts: list[str] = []
        cur: ast.expr = node
        while isinstance(cur, ast.Attribute):
            parts.append(cur.attr)
            cur = cur.value
        parts.reverse()
        if isinstance(cur, ast.Name) and cur.id == BASE_KEY:
            return _lookup(self.base, parts, self.file, node.lineno)
        container = self.value(cur)
        for part in parts:
            if not isinstance(container, dict) or part not in container:
                raise self.fail(node, f"{part!r} is not a key of the dict before it (attribute "
                                      "access reads dict keys only)")
            container = container[part]
        return copy.deepcopy(container)

    def base_placeholder(self, node: ast.Set) -> Any:
        """``{{_base_.a.b}}`` (a set holding a set holding a dotted name) → the base's value."""
        if len(node.elts) != 1 or not isinstance(node.elts[0], ast.Set):
            return None
        inner = node.elts[0]
        if len(inner.elts) != 1:
            return None
        parts: list[str] = []
        cur: ast.expr = inner.elts[0]
        while isinstance(cur, ast.Attribute):
            parts.append(cur.attr)
            cur = cur.value
        if not (isinstance(cur, ast.Name) and cur.id == BASE_KEY and parts):
            return None
        return _lookup(self.base, list(reversed(parts)), self.file, node.lineno)

    def call(self, node: ast.Call) -> Any:
        func = node.func
        if isinstance(func, ast.Name) and func.id in _PURE and func.id not in self.names:
            return self.pure_call(node, func.id)
        if not (isinstance(func, ast.Name) and func.id in _CONTAINERS):
            name = ast.unparse(func) if hasattr(ast, "unparse") else "a function"
            raise self.fail(node, f"calling {name}(...) is not allowed")
        kind = func.id
        args = self.sequence(node.args, node)
        if kind == "dict":
            if len(args) > 1:
                raise self.fail(node, "dict() takes at most one positional argument")
            out: dict = {}
            if args:
                try:
                    out.update(args[0])
                except (TypeError, ValueError) as err:
                    raise self.fail(node, f"dict(): {err}") from None
            for kw in node.keywords:
                if kw.arg is None:
                    spread = self.value(kw.value)
                    if not isinstance(spread, dict):
                        raise self.fail(kw.value, "** needs a dict")
                    out.update(spread)
                else:
                    out[kw.arg] = self.value(kw.value)
            return out
        if node.keywords or len(args) > 1:
            raise self.fail(node, f"{kind}() takes one positional argument here")
        if not args:
            return _CONTAINERS[kind]()
        if not isinstance(args[0], (list, tuple, str, dict)):
            raise self.fail(node, f"{kind}() needs a list, tuple, string or dict")
        return _CONTAINERS[kind](args[0])

    def pure_call(self, node: ast.Call, name: str) -> Any:
        args = self.sequence(node.args, node)
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None or kw.arg not in ("ndigits", "reverse", "default", "start"):
                raise self.fail(node, f"{name}() keyword arguments other than ndigits, reverse, "
                                      "default and start are not allowed")
            kwargs[kw.arg] = self.value(kw.value)
        for a in args:
            if not isinstance(a, (int, float, str, bool, list, tuple, dict, type(None))):
                raise self.fail(node, f"{name}() takes data only")
        try:
            result = _PURE[name](*args, **kwargs)
            if isinstance(result, range):
                if len(result) > _MAX_SEQUENCE:
                    raise self.fail(node, "the range is too long")
                result = list(result)
        except (TypeError, ValueError, OverflowError) as err:
            raise self.fail(node, f"{name}(): {err}") from None
        if isinstance(result, int) and not isinstance(result, bool) and abs(result) > _MAX_NUMBER:
            raise self.fail(node, "the number is too large")
        return result

    def binop(self, op: ast.operator, left: Any, right: Any, node: ast.AST) -> Any:
        fn = _BINOPS.get(type(op))
        if fn is None:
            raise self.fail(node, f"the operator {type(op).__name__} is not allowed")
        if isinstance(op, ast.Pow) and isinstance(right, (int, float)) and abs(right) > 256:
            raise self.fail(node, "the exponent is too large")
        if isinstance(op, ast.Mult):
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple, bytes)) and isinstance(n, int) \
                        and len(seq) * max(n, 0) > _MAX_SEQUENCE:
                    raise self.fail(node, "the repeated sequence is too long")
        if isinstance(op, ast.Mod) and isinstance(left, (str, bytes)):
            raise self.fail(node, "string formatting with % is not allowed")
        try:
            result = fn(left, right)
        except (TypeError, ZeroDivisionError, OverflowError, ValueError) as err:
            raise self.fail(node, f"{type(err).__name__}: {err}") from None
        if isinstance(result, int) and not isinstance(result, bool) and abs(result) > _MAX_NUMBER:
            raise self.fail(node, "the number is too large")
        return result
