"""Progress bars for byte transfers, built in one place: tqdm on stderr, off with
``progress=False`` or ``HUBLOADER_DISABLE_PROGRESS_BARS=1``."""

from __future__ import annotations

import sys

from .. import settings

__all__ = ["byte_bar", "NullBar"]


class NullBar:
    """A do-nothing bar with tqdm's methods, used when bars are off."""

    def update(self, n: int = 1) -> None:  # noqa: D401 - tqdm's signature
        pass

    def set_postfix(self, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def byte_bar(*, total: int | None, desc: str, enabled: bool = True, initial: int = 0):
    """A tqdm bar counting bytes on stderr, or a :class:`NullBar` when bars are off.

    Args:
        total: expected bytes (``None``: unknown).
        desc: the label, usually the file name.
        enabled: the caller's ``progress`` argument; ``HUBLOADER_DISABLE_PROGRESS_BARS=1``
            turns bars off regardless.
        initial: bytes already present (a resumed download).

    Returns:
        A context manager with ``update(n)`` and ``close()``.
    """
    if not enabled or settings.progress_disabled():
        return NullBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True,
                unit_divisor=1024, file=sys.stderr, leave=True, dynamic_ncols=True)
