"""Progress bars (tqdm) that one switch silences everywhere: ``text2token --quiet`` sets ``TEXT2TOKEN_QUIET=1``."""

from __future__ import annotations

import os


def quiet() -> bool:
    return os.environ.get("TEXT2TOKEN_QUIET", "") not in ("", "0")


def progress_bar(iterable=None, *, disable: bool = False, **kwargs):
    """``tqdm.auto.tqdm`` unless disabled here or globally quiet."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=disable or quiet(), **kwargs)
