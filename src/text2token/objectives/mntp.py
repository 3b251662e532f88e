"""Masked next-token prediction (MNTP), LLM2Vec's first step: with bidirectional attention, a fraction of each
text's tokens is replaced by a mask token and each masked token is predicted — through the frozen LM head — from
the hidden state of the position *before* it (the position that predicted it in the causal model). The first
token of a text is never masked (nothing precedes it). Loss: cross-entropy over the masked positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Objective, ObjectiveOutput

IGNORE = -100


def mask_token_id(tokenizer) -> int:
    """The tokenizer's mask token; without one (decoder tokenizers), ``_`` as LLM2Vec does for Llama, else unk/pad."""
    if tokenizer.mask_token_id is not None:
        return int(tokenizer.mask_token_id)
    underscore = tokenizer.convert_tokens_to_ids("_")
    if underscore is not None and underscore != tokenizer.unk_token_id:
        return int(underscore)
    return int(tokenizer.unk_token_id if tokenizer.unk_token_id is not None else tokenizer.pad_token_id)


class MNTP(Objective):
    name = "mntp"
    token_level = True

    def __init__(self, mask_ratio: float, mask_id: int):
        self.mask_ratio, self.mask_id = mask_ratio, mask_id

    def attach_targets(self, batch, model) -> None:
        """Choose the masked positions (torch's RNG: seeded per stage, saved in checkpoints), keep their tokens as
        labels and mask them in the input."""
        ids, real = batch.input_ids, batch.attention_mask.bool()
        if batch.position_ids is not None:  # packed rows: a text starts where its positions restart
            first = batch.position_ids == 0
        else:  # one text per row, padded on either side
            first = real & (real.long().cumsum(dim=1) == 1)
        chosen = (torch.rand(ids.shape, device=ids.device) < self.mask_ratio) & real & ~first
        batch.token_labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
        batch.input_ids = torch.where(chosen, torch.full_like(ids, self.mask_id), ids)

    def __call__(self, views, batch, model) -> ObjectiveOutput:
        hidden = views[0]  # B×L×H
        labels = batch.token_labels[:, 1:]
        chosen = labels != IGNORE
        logits = model.vocab_logits(hidden[:, :-1][chosen])  # only the masked positions through the LM head
        targets = labels[chosen]
        loss = F.cross_entropy(logits, targets, reduction="sum") / chosen.sum().clamp_min(1)
        accuracy = (logits.detach().argmax(dim=-1) == targets).float().sum() / chosen.sum().clamp_min(1)
        return ObjectiveOutput({self.name: loss}, {"masked_accuracy": accuracy})

    def describe(self) -> str:
        return f"{self.name} (mask {self.mask_ratio:g})"
