"""What one optimizer step consumes: a deterministic schedule of example rows per step, and a
collator that turns rows into a :class:`Batch` (token ids, mask, and the stage's targets)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from ..errors import Text2TokenError
from ..packing import pack


@dataclass
class Batch:
    """One process's share of a step. Rows are examples of the stage (indices into its example list).

    ``position_ids`` / ``segment_ids`` are for packed rows (several texts per row, one segment id each);
    they are None for padded rows, where every row is one text. ``target_ids``/``target_weights`` are
    the stage's sparse targets (B×K, weight 0 = padding), if it has precomputed ones; ``target_probs``
    dense targets (B×V) an objective computed for this batch (stage 2 on the fly).
    """

    rows: np.ndarray
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor | None = None
    segment_ids: torch.Tensor | None = None
    target_ids: torch.Tensor | None = None
    target_weights: torch.Tensor | None = None
    target_probs: torch.Tensor | None = None
    token_labels: torch.Tensor | None = None  # B×L original tokens at masked positions, -100 elsewhere (MNTP)

    @property
    def num_tokens(self) -> int:
        """Real (non-padding) tokens in this batch."""
        return int(self.attention_mask.sum())

    def to(self, device) -> Batch:
        """On ``device``; copies from pinned memory (:meth:`pin_memory`) do not block the host."""
        moved = {
            f.name: getattr(self, f.name).to(device, non_blocking=True)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)

    def pin_memory(self) -> Batch:
        pinned = {
            f.name: getattr(self, f.name).pin_memory()
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **pinned)


ROW_BUCKET = 8  # packed rows per step are rounded up to a multiple of this with fixed shapes
WIDTH_BUCKET = 32  # padded rows are padded to a multiple of this many tokens with fixed shapes


class Collator:
    """Rows → :class:`Batch`: tokenizes the rows' texts as the model does (template, truncation), pads them one
    text per row — or, with ``pack_length``, packs them several per row (:mod:`text2token.packing`) — and
    attaches their targets in the order the pooled vectors come out. ``text_of_row[r]`` is the index into
    ``texts`` of example ``r``.

    ``fixed_shapes`` (for a compiled step): packed rows are always ``pack_length`` wide and their number is
    rounded up to a multiple of 8 with empty rows; padded rows are padded to a multiple of 32 tokens. A run
    then sees a few batch shapes (buckets) instead of one per step, so the compiled graph is reused."""

    def __init__(self, model, texts: list[str], text_of_row: np.ndarray, targets=None):
        self.model = model
        self.texts = texts
        self.text_of_row = np.asarray(text_of_row)
        self.targets = targets
        self.pack_length = 0
        self.fixed_shapes = False
        self._ids = None

    def token_lengths(self) -> np.ndarray:
        """Every example's token count as the model tokenizes it (tokenized once; packed batches reuse the ids)."""
        if self._ids is None:
            self._ids = self.model.token_ids([self.texts[i] for i in self.text_of_row])
        return np.array([len(x) for x in self._ids])

    def __len__(self) -> int:
        return len(self.text_of_row)

    def lengths(self) -> np.ndarray:
        """A cheap length of every example (characters), for length-bucketed schedules."""
        return np.array([len(self.texts[i]) for i in self.text_of_row])

    def __call__(self, rows: np.ndarray) -> Batch:
        rows = np.asarray(rows)
        if self.pack_length:
            if self._ids is None:
                self.token_lengths()
            fixed = {"pad_to": self.pack_length, "rows_multiple_of": ROW_BUCKET} if self.fixed_shapes else {}
            packed = pack([self._ids[r] for r in rows], self.pack_length, self.model.tokenizer.pad_token_id, **fixed)
            rows = rows[packed.texts]  # the order the pooled vectors come out in
            batch = Batch(
                rows=rows,
                input_ids=packed.input_ids,
                attention_mask=(packed.segment_ids > 0).long(),
                position_ids=packed.position_ids,
                segment_ids=packed.segment_ids,
            )
        else:
            enc = self.model.tokenize(
                [self.texts[self.text_of_row[r]] for r in rows], WIDTH_BUCKET if self.fixed_shapes else 1
            )
            batch = Batch(rows=rows, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        if self.targets is not None:
            batch.target_ids, batch.target_weights = self.targets.batch(rows)
        return batch


def token_budget_schedule(token_lengths: np.ndarray, tokens_per_step: int, steps: int, seed: int) -> list[np.ndarray]:
    """Deterministic global batches that fill each step up to ``tokens_per_step`` tokens: examples in shuffled
    epochs, each step taking them in order while they fit (a step always takes at least one)."""
    n = len(token_lengths)
    if n == 0:
        raise Text2TokenError("no training texts with targets")
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    current: list[int] = []
    used = 0
    while len(out) < steps:
        for i in rng.permutation(n):
            if current and used + token_lengths[i] > tokens_per_step:
                out.append(np.asarray(current))
                current, used = [], 0
                if len(out) == steps:
                    break
            current.append(int(i))
            used += int(token_lengths[i])
    return out


def batch_schedule(n: int, batch_size: int, steps: int, seed: int, lengths: np.ndarray) -> list[np.ndarray]:
    """Deterministic global batches for every step: shuffled epochs, length-bucketed.

    Within windows of 16 batches, examples are sorted by length before being cut into
    batches (less padding); the batch order is then shuffled again.
    """
    if n < batch_size:
        raise Text2TokenError(f"only {n} training texts with targets, fewer than one batch of {batch_size}")
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    while len(out) < steps:
        perm = rng.permutation(n)
        usable = (n // batch_size) * batch_size
        window = 16 * batch_size
        batches = []
        for start in range(0, usable, window):
            chunk = perm[start : min(start + window, usable)]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
        for j in rng.permutation(len(batches)):
            out.append(batches[j])
    return out[:steps]
