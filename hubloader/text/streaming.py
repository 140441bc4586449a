"""Text as it is generated: :class:`TextStreamer` turns the token ids ``generate(streamer=)``
feeds it into text pieces for a callback (the CLI prints them; the library never prints)."""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["TextStreamer"]


def _to_stdout(text: str) -> None:
    import sys

    sys.stdout.write(text)
    sys.stdout.flush()


class TextStreamer:
    """Decode a single sequence as it grows and hand each new piece of text to ``on_text``.

    The whole generated part is decoded each step and only the new suffix is passed on, so
    tokens that merge when decoded together (byte-fallback pieces, leading-space markers) come
    out as they would in one ``decode``; a piece ending in an incomplete UTF-8 character is
    held back until the character is complete.

    Args:
        tokenizer: anything with ``decode(ids, skip_special_tokens=...)``.
        on_text: called with each new piece of text, and with the rest at :meth:`end`
            (default: written to standard output, as transformers' ``TextStreamer`` does).
        skip_prompt: do not pass the prompt (the first ``put``) on.

    Example:
        >>> model.generate(ids, max_new_tokens=20,
        ...                streamer=TextStreamer(tok, lambda s: print(s, end="", flush=True)))
    """

    def __init__(self, tokenizer: Any, on_text: Callable[[str], None] | None = None, *,
                 skip_prompt: bool = True, skip_special_tokens: bool = True):
        # without on_text the text goes to standard output, as transformers' TextStreamer
        # writes it: the caller asked for it there
        self.tokenizer, self.on_text = tokenizer, on_text or _to_stdout
        self.skip_prompt, self.skip_special_tokens = skip_prompt, skip_special_tokens
        self._ids: list[int] = []
        self._sent = 0
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        ids = value.tolist() if hasattr(value, "tolist") else list(value)
        if ids and isinstance(ids[0], list):  # [batch, seq]: this streamer follows row 0
            ids = ids[0]
        if not self._prompt_seen:
            self._prompt_seen = True
            if self.skip_prompt:
                return
        self._ids.extend(int(i) for i in ids)
        text = self.tokenizer.decode(self._ids, skip_special_tokens=self.skip_special_tokens)
        if text.endswith("\ufffd"):  # an unfinished multi-byte character
            return
        self._emit(text)

    def end(self) -> None:
        if self._ids:
            self._emit(self.tokenizer.decode(self._ids, skip_special_tokens=self.skip_special_tokens))

    def _emit(self, text: str) -> None:
        if len(text) > self._sent:
            self.on_text(text[self._sent:])
            self._sent = len(text)
