"""What one optimizer step consumes: a deterministic schedule of example rows per step, and a
collator that turns rows into a :class:`Batch` (token ids, mask, and the stage's targets)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from ..errors import Text2TokenError


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

    @property
    def num_tokens(self) -> int:
        """Real (non-padding) tokens in this batch."""
        return int(self.attention_mask.sum())

    def to(self, device) -> Batch:
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self)
                 if isinstance(getattr(self, f.name), torch.Tensor)}
        return replace(self, **moved)


class Collator:
    """Rows → :class:`Batch`: tokenizes the rows' texts as the model does (template, truncation, padding)
    and attaches their targets. ``text_of_row[r]`` is the index into ``texts`` of example ``r``."""

    def __init__(self, model, texts: list[str], text_of_row: np.ndarray, targets=None):
        self.model = model
        self.texts = texts
        self.text_of_row = np.asarray(text_of_row)
        self.targets = targets

    def __len__(self) -> int:
        return len(self.text_of_row)

    def lengths(self) -> np.ndarray:
        """A cheap length of every example (characters), for length-bucketed schedules."""
        return np.array([len(self.texts[i]) for i in self.text_of_row])

    def __call__(self, rows: np.ndarray) -> Batch:
        enc = self.model.tokenize([self.texts[self.text_of_row[r]] for r in rows])
        batch = Batch(rows=np.asarray(rows), input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        if self.targets is not None:
            batch.target_ids, batch.target_weights = self.targets.batch(rows)
        return batch


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
