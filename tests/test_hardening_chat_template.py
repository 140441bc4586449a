"""Hostile chat templates: work without bound (nested loops that print nothing, huge
repetitions and powers, runaway output) is stopped, and every failure of a template reaches
the caller as :class:`ChatTemplateError` (a ``TokenizerError``, a ``ValueError``)."""

from __future__ import annotations

import time

import pytest

from hubloader.text.chat_template import render_chat_template
from hubloader.errors import ChatTemplateError

MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.fixture(autouse=True)
def _quick_limits(monkeypatch):
    monkeypatch.setenv("HUBLOADER_CHAT_TEMPLATE_TIMEOUT", "0.5")
    monkeypatch.setenv("HUBLOADER_CHAT_TEMPLATE_MAX_CHARS", "100000")


@pytest.mark.parametrize("template", [
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% for c in 'x' * 50000 %}{% for d in 'x' * 50000 %}{% endfor %}{% endfor %}",
    "{% for i in range(100000) %}{% for m in messages %}{{ '' }}{% endfor %}"
    "{% for j in range(100000) %}{% set k = j %}{% endfor %}{% endfor %}",
])
def test_loops_that_print_nothing_are_stopped_in_time(template):
    start = time.monotonic()
    with pytest.raises(ChatTemplateError, match="HUBLOADER_CHAT_TEMPLATE_TIMEOUT"):
        render_chat_template(template, MESSAGES)
    assert time.monotonic() - start < 30  # (bounded at all; the limit itself is 0.5 s)


@pytest.mark.parametrize("template", [
    "{{ 'x' * 10**9 }}",
    "{{ [1, 2] * 10**9 }}",
    "{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}",
    "{{ 10 ** 100000 }}",
])
def test_values_and_output_past_the_size_limit_are_refused(template):
    with pytest.raises(ChatTemplateError):
        render_chat_template(template, MESSAGES)


@pytest.mark.parametrize("template, cause", [
    ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", RecursionError),
    ("{{ 10.0 ** 400 }}", OverflowError),
    ("{{ messages + 1 }}", TypeError),
    ("{{ '%d' % 'x' }}", TypeError),
    ("{{ 1 / 0 }}", ZeroDivisionError),
    ("{{ raise_exception('no system role') }}", None),
    ("{{ messages[0].content.nope.deeper }}", None),
    ("{% for %}", None),
])
def test_every_failure_is_a_chat_template_error(template, cause):
    with pytest.raises(ChatTemplateError) as info:
        render_chat_template(template, MESSAGES)
    assert isinstance(info.value, ValueError)
    if cause is not None:
        assert isinstance(info.value.__cause__, cause)


def test_an_ordinary_template_still_renders():
    template = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
                "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    assert render_chat_template(template, MESSAGES, add_generation_prompt=True) == \
        "<|user|>Hi\n<|assistant|>"
