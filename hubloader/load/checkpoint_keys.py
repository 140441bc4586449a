"""Checkpoint key mappings, declared once and used both ways.

A family declares ``checkpoint_key_rules``: ``(pattern, replacement)`` pairs applied in order to
every key of a checkpoint, turning the publisher's names (transformers':
``bert.encoder.layer.0.attention.self.query.weight``) into the module paths of hubloader's
classes (``backbone.blocks.0.attention.query.weight``). Saving needs the opposite direction;
:func:`invert_key_rules` derives it from the same pairs, so the two cannot drift apart.

A rule is invertible when its pattern is literal text (``\\.`` for a dot, ``^``/``$``
anchors) with capture groups that the replacement uses once each, in any order. Read-only
aliases (legacy ``gamma``/``beta`` names, a prefix that several publishers spell differently)
stay out of the inverted part; see how :mod:`hubloader.models.bert` splits them.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping, TypeVar

from ..errors import WeightsError

__all__ = ["KeyRules", "invert_key_rules", "layer_rules", "rename_keys"]

#: ``(pattern, replacement)`` pairs, applied in order with :func:`re.sub`
KeyRules = tuple[tuple[str, str], ...]
V = TypeVar("V")

_GROUP_REF = re.compile(r"\\(\d)")


def _split_pattern(pattern: str) -> tuple[bool, list[str | tuple[str]], bool]:
    """``^a\\.(b|c)\\.d$`` → (anchored start, ["a.", ("b|c",), ".d"], anchored end).

    Literal text is unescaped; a group is kept as its regex in a 1-tuple.
    """
    start = pattern.startswith("^")
    end = pattern.endswith("$") and not pattern.endswith("\\$")
    body = pattern[1 if start else 0: len(pattern) - (1 if end else 0)]
    parts: list[str | tuple[str]] = []
    text, i = "", 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            if i + 1 >= len(body) or body[i + 1].isalnum():
                raise WeightsError(f"rule {pattern!r}: only escaped punctuation is invertible")
            text += body[i + 1]
            i += 2
        elif ch == "(":
            close = body.find(")", i)
            inner = body[i + 1:close]
            if close < 0 or "(" in inner or inner.startswith("?"):
                raise WeightsError(f"rule {pattern!r}: groups must be plain and not nested")
            if text:
                parts.append(text)
                text = ""
            parts.append((inner,))
            i = close + 1
        elif ch in ".*+?[]{}|^$":
            raise WeightsError(f"rule {pattern!r}: {ch!r} outside a group is not invertible")
        else:
            text += ch
            i += 1
    if text:
        parts.append(text)
    return start, parts, end


def _invert_rule(pattern: str, replacement: str) -> tuple[str, str]:
    start, parts, end = _split_pattern(pattern)
    groups = [p[0] for p in parts if isinstance(p, tuple)]
    refs = [int(n) for n in _GROUP_REF.findall(replacement)]
    if sorted(refs) != list(range(1, len(groups) + 1)):
        raise WeightsError(f"rule {pattern!r} -> {replacement!r} is not invertible: every group "
                         "must appear exactly once in the replacement")
    # the inverse pattern: the replacement's text, each reference standing for its group
    new_pattern, new_index = "", {}  # type: str, dict[int, int]
    for i, piece in enumerate(_GROUP_REF.split(replacement)):
        if i % 2:
            new_index[int(piece)] = len(new_index) + 1
            new_pattern += f"({groups[int(piece) - 1]})"
        else:
            new_pattern += re.escape(piece)
    # the inverse replacement: the pattern's text, each group referring to its new number
    new_replacement, n = "", 0
    for part in parts:
        if isinstance(part, tuple):
            n += 1
            new_replacement += f"\\{new_index[n]}"
        else:
            new_replacement += part.replace("\\", "\\\\")
    return ("^" if start else "") + new_pattern + ("$" if end else ""), new_replacement


def layer_rules(source: str, target: str, names: Iterable[tuple[str, str]]) -> KeyRules:
    """Rules renaming ``<source>.N.<old>.`` to ``<target>.N.<new>.`` for each ``(old, new)``
    pair, wherever the layer list sits (at the start of a key or after a dot); invertible.

    Example:
        >>> rules = layer_rules("layers", "blocks", [("self_attn.q_proj", "attention.query")])
        >>> rename_keys({"model.layers.0.self_attn.q_proj.weight": 1}, rules)
        {'model.blocks.0.attention.query.weight': 1}
    """
    return tuple((rf"(^|\.){re.escape(source)}\.(\d+)\.{re.escape(old)}\.",
                  rf"\1{target}.\2.{new}.") for old, new in names)


def invert_key_rules(rules: Iterable[tuple[str, str]]) -> KeyRules:
    """The rules that undo ``rules``: each pair inverted, in reverse order.

    Raises:
        WeightsError: a rule is not invertible (a family declaration bug; keep such a rule in
            the read-only part of the family's rules and declare checkpoint_write_rules).

    Example:
        >>> invert_key_rules([(r"encoder\\.layer\\.(\\d+)\\.", r"blocks.\\1.")])
        (('blocks\\\\.(\\\\d+)\\\\.', 'encoder.layer.\\\\1.'),)
    """
    return tuple(_invert_rule(p, r) for p, r in reversed(list(rules)))


def rename_keys(state: Mapping[str, V], rules: Iterable[tuple[str, str]]) -> dict[str, V]:
    """Apply ``rules`` in order to every key of ``state`` (values untouched)."""
    compiled = [(re.compile(p), r) for p, r in rules]
    out: dict[str, V] = {}
    for key, value in state.items():
        for pattern, repl in compiled:
            key = pattern.sub(repl, key)
        out[key] = value
    return out
