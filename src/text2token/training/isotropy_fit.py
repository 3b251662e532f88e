"""Fitting a model's isotropy correction (:mod:`text2token.isotropy`) on a corpus: a seeded sample of its texts, read
as the trainer reads a corpus. Used at the end of training, by ``text2token postprocess`` and by ``eval``'s corrected
baseline (the same recipe fitted on the untrained backbone)."""

from __future__ import annotations

import logging

from ..errors import Text2TokenError
from ..modes import ISOTROPY_DIRECTIONS, ISOTROPY_FIT_TEXTS
from .corpus import BUNDLED_PREFIX, corpus_path, read_corpus

logger = logging.getLogger(__name__)


def corpus_name(corpus: str | None) -> str:
    """How a fit records its corpus: ``bundled:NAME`` for a bundled one (null = ``bundled:brown``), else the path."""
    return corpus if corpus else f"{BUNDLED_PREFIX}brown"


def fit_on_corpus(
    model,
    corpus: str | None = None,
    texts: int = ISOTROPY_FIT_TEXTS,
    directions: int = ISOTROPY_DIRECTIONS,
    seed: int = 0,
    field: str = "text",
    batch_size: int = 32,
    show_progress_bar: bool | None = None,
    errors: str = "strict",
    expected_sha256_16: str | None = None,
):
    """Fit and set ``model``'s isotropy correction on ``texts`` texts of ``corpus`` (a path, ``bundled:NAME``, or
    None for the bundled Brown corpus) shuffled with ``seed``; returns it. Its record names the corpus, its hash, the
    sample size, the seed and the directions, so the same fit can be repeated on another model
    (``expected_sha256_16``: refuse a corpus whose texts are not the recorded ones)."""
    path = corpus_path(corpus)
    if not path.is_file():
        raise Text2TokenError(f"isotropy corpus {path} does not exist")
    sample, info = read_corpus(path, field, seed, texts, errors)
    if expected_sha256_16 and info["sha256_16"] != expected_sha256_16:  # checked before any text is encoded
        raise Text2TokenError(
            f"{corpus_name(corpus)} has changed since the correction was fitted on it (its hash differs)"
        )
    if len(sample) < texts:
        logger.info(
            "isotropy corpus %s holds %d texts, fewer than the %d asked for: all are used", path, info["lines"], texts
        )
    fitted_on = {"corpus": corpus_name(corpus), "corpus_sha256_16": info["sha256_16"], "seed": seed}
    if field != "text":
        fitted_on["field"] = field
    if errors != "strict":
        fitted_on["errors"] = errors
    return model.fit_correction(
        sample, directions, batch_size=batch_size, fitted_on=fitted_on, show_progress_bar=show_progress_bar
    )


def refit_like(model, record: dict, batch_size: int = 32, show_progress_bar: bool | None = None):
    """Fit ``model``'s correction with the recipe another model's correction records (corpus, texts, seed,
    directions) — how a baseline is corrected the same way for a fair comparison. A corpus that is no longer there
    (or not the one recorded) is an error naming it."""
    corpus = record.get("corpus")
    name = None if corpus == corpus_name(None) else corpus
    return fit_on_corpus(
        model,
        name,
        texts=int(record.get("texts", ISOTROPY_FIT_TEXTS)),
        directions=int(record.get("directions", ISOTROPY_DIRECTIONS)),
        seed=int(record.get("seed", 0)),
        field=record.get("field", "text"),
        errors=record.get("errors", "strict"),
        batch_size=batch_size,
        show_progress_bar=show_progress_bar,
        expected_sha256_16=record.get("corpus_sha256_16"),
    )
