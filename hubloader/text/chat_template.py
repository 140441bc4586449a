"""Chat templates: ``tokenizer_config.json``'s ``chat_template`` (Jinja2) rendered as
transformers renders it, in Jinja2's immutable sandbox (a template from a hub is untrusted
input: it can format text, not reach Python objects).

Rendering is bounded: a template may take ``HUBLOADER_CHAT_TEMPLATE_TIMEOUT`` seconds and
produce (or build, with ``*``) ``HUBLOADER_CHAT_TEMPLATE_MAX_CHARS`` characters; past either,
and on any other failure, it raises :class:`ChatTemplateError`. The time is checked as the
template's code runs, line by line, so loops that print nothing are bounded too.

Jinja2 is a runtime dependency that costs nothing extra (torch requires it); it is imported on
first use, so ``import hubloader`` stays cheap.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

from .. import settings
from ..errors import ChatTemplateError

__all__ = ["find_chat_template", "render_chat_template"]

logger = logging.getLogger(__name__)


def find_chat_template(model_dir: Path, tokenizer_config: Mapping[str, Any],
                       *, name: str = "default") -> str | None:
    """The chat template of a model directory: ``tokenizer_config.json``'s ``chat_template``
    (a string, or a list of ``{"name", "template"}`` where ``name`` picks one), else
    ``chat_template.jinja``, else ``chat_template.json`` (the files newer transformers write)."""
    template = tokenizer_config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get(name)
    if isinstance(template, str):
        return template
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    as_json = model_dir / "chat_template.json"
    if as_json.is_file():
        try:
            data = json.loads(as_json.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ChatTemplateError(f"{as_json} is not valid JSON ({err})") from err
        if isinstance(data, dict) and isinstance(data.get("chat_template"), str):
            return data["chat_template"]
    return None


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: Any = None, sort_keys: bool = False) -> str:
    # Jinja's own tojson escapes HTML characters, which chat templates do not want
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


@functools.lru_cache(maxsize=16)
def _compile(template: str):
    try:
        import jinja2
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as err:  # pragma: no cover - torch itself requires jinja2
        raise ChatTemplateError("apply_chat_template needs Jinja2: pip install jinja2") from err

    def raise_exception(message: str):
        raise jinja2.exceptions.TemplateError(message)

    class _Bounded(ImmutableSandboxedEnvironment):
        # ``*`` and ``**`` build a value in one step, beyond the reach of the line clock
        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context, operator, left, right):
            if operator == "**" and isinstance(left, int) and isinstance(right, int) and \
                    max(abs(left).bit_length(), 1) * abs(right) > 1 << 16:
                raise ChatTemplateError(f"the chat template raises an integer to the power "
                                        f"{right}, a number too large to build")
            if operator == "*":
                sized = left if hasattr(left, "__len__") else right
                times = right if sized is left else left
                if isinstance(times, int) and hasattr(sized, "__len__") and \
                        len(sized) * times > settings.chat_template_max_chars():
                    raise ChatTemplateError(
                        "the chat template builds a value longer than "
                        f"{settings.chat_template_max_chars():,} characters "
                        "(HUBLOADER_CHAT_TEMPLATE_MAX_CHARS)")
            return super().call_binop(context, operator, left, right)

    env = _Bounded(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template)
    except jinja2.exceptions.TemplateSyntaxError as err:
        raise ChatTemplateError(f"the chat template does not parse: {err}") from err


def render_chat_template(template: str, messages: Sequence[Mapping[str, Any]], *,
                         add_generation_prompt: bool = False,
                         tools: Sequence[Mapping[str, Any]] | None = None,
                         documents: Sequence[Mapping[str, Any]] | None = None,
                         special_tokens: Mapping[str, str] | None = None,
                         **variables: Any) -> str:
    """Render ``template`` for ``messages`` (``[{"role": ..., "content": ...}]``).

    Args:
        add_generation_prompt: end with the header of the assistant's turn.
        tools, documents: JSON-schema tools and ``{"title", "text"}`` documents, for
            templates that show them.
        special_tokens: ``bos_token``, ``eos_token``... as the template may use them.
        **variables: further template variables (``date_string``, ``enable_thinking``...).

    Raises:
        ChatTemplateError: messages that are not dicts with a role, or a template that
            fails (including its own ``raise_exception``).
    """
    import jinja2

    if isinstance(messages, (str, bytes)) or not all(
            isinstance(m, Mapping) and "role" in m for m in messages):
        raise ChatTemplateError("messages must be a list of dicts with 'role' and 'content', "
                                "e.g. [{'role': 'user', 'content': 'Hi'}]")
    compiled = _compile(template)
    limit = settings.chat_template_max_chars()
    clock = _Clock(settings.chat_template_timeout())
    pieces: list[str] = []
    size = 0
    try:
        with clock:
            for piece in compiled.generate(
                    messages=[dict(m) for m in messages], tools=tools, documents=documents,
                    add_generation_prompt=add_generation_prompt,
                    **{**dict(special_tokens or {}), **variables}):
                size += len(piece)
                if size > limit:
                    raise ChatTemplateError(
                        f"the chat template renders more than {limit:,} characters "
                        "(HUBLOADER_CHAT_TEMPLATE_MAX_CHARS); fix the template or raise the limit")
                pieces.append(piece)
    except ChatTemplateError:
        raise
    except jinja2.exceptions.TemplateError as err:
        raise ChatTemplateError(f"the chat template failed: {err}") from err
    except (RecursionError, MemoryError) as err:
        raise ChatTemplateError(f"the chat template ran out of {'stack' if isinstance(err, RecursionError) else 'memory'} "
                                "(a runaway macro or loop); fix the template") from err
    except Exception as err:  # noqa: BLE001 - the template's own errors (TypeError, ...) all
        raise ChatTemplateError(f"the chat template failed: {type(err).__name__}: {err}") from err
    return "".join(pieces)


class _Clock:
    """Raise :class:`ChatTemplateError` inside the template's code once it has run for
    ``seconds``: a trace of this thread, active only in frames of template code (Jinja
    compiles a template to Python, named ``<template>``), checks the time every few hundred
    lines. The tracer in place before (a debugger, coverage) is put back after."""

    _EVERY = 256

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._lines = 0
        self._deadline = 0.0
        self._previous: Any = None

    def _local(self, frame, event, arg):
        if event == "line":
            self._lines += 1
            if self._lines % self._EVERY == 0 and time.monotonic() > self._deadline:
                raise ChatTemplateError(
                    f"the chat template ran for more than {self.seconds:g} s "
                    "(HUBLOADER_CHAT_TEMPLATE_TIMEOUT); fix the template or raise the limit")
        return self._local

    def _global(self, frame, event, arg):
        return self._local if frame.f_code.co_filename == "<template>" else None

    def __enter__(self) -> "_Clock":
        self._deadline = time.monotonic() + self.seconds
        self._previous = sys.gettrace()
        sys.settrace(self._global)
        return self

    def __exit__(self, *exc: Any) -> None:
        sys.settrace(self._previous)
