"""Causal or bidirectional attention for any decoder-only model, without copying model files.

transformers >= 5.2 builds a padding-only (bidirectional) mask when ``config.is_causal`` is
False. Attention modules also carry their own ``is_causal`` flag, which SDPA/flash kernels
use when no mask is materialised (e.g. a batch without padding); leaving it True would be
the silent causal fallback LLM2Vec users hit. So both are switched, and the result is
*verified* with a probe: in bidirectional mode the first token's hidden state must change
when a later token changes, in causal mode it must not. A family that fails the probe is
refused with a clear error instead of silently staying causal.
"""

from __future__ import annotations

import logging

import torch

from .errors import ModelLoadError
from .modes import Attention

logger = logging.getLogger(__name__)

# Families on which the probe has been run in this project's tests.
VALIDATED_FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma3_text")


def set_attention(model: torch.nn.Module, mode: str, verify: bool = True) -> None:
    """Switch a causal LM (or its trunk) to ``mode`` and, by default, verify it took effect."""
    Attention.require(mode, "attention")
    causal = mode == "causal"
    config = model.config
    config.is_causal = causal
    for sub in model.modules():
        sub_config = getattr(sub, "config", None)
        if sub_config is not None and sub_config is not config and hasattr(sub_config, "model_type"):
            sub_config.is_causal = causal
        if hasattr(sub, "is_causal") and isinstance(sub.is_causal, bool):
            sub.is_causal = causal
    if verify:
        verify_attention(model, mode)


@torch.no_grad()
def probe_first_token_sensitivity(model: torch.nn.Module) -> float:
    """Max change of position 0's last hidden state when the last of 4 tokens changes."""
    trunk = model.base_model if hasattr(model, "base_model") else model
    device = next(model.parameters()).device
    vocab = model.config.vocab_size
    ids_a = torch.tensor([[5, 11, 17, 23]], device=device) % vocab
    ids_b = ids_a.clone()
    ids_b[0, -1] = (ids_b[0, -1] + 7) % vocab
    was_training = trunk.training
    trunk.eval()
    try:
        ha = trunk(input_ids=ids_a).last_hidden_state[0, 0].float()
        hb = trunk(input_ids=ids_b).last_hidden_state[0, 0].float()
    finally:
        trunk.train(was_training)
    return (ha - hb).abs().max().item()


def verify_attention(model: torch.nn.Module, mode: str) -> None:
    delta = probe_first_token_sensitivity(model)
    family = getattr(model.config, "model_type", "?")
    if mode == "bidirectional" and family not in VALIDATED_FAMILIES and delta > 0.0:
        logger.warning(
            "bidirectional attention on '%s' passed the probe but is not in the validated families (%s)",
            family,
            ", ".join(VALIDATED_FAMILIES),
        )
    if mode == "bidirectional" and delta == 0.0:
        raise ModelLoadError(
            f"bidirectional attention is not honoured by model family '{family}' in this transformers "
            f"version (validated: {', '.join(VALIDATED_FAMILIES)}); use attention='causal'"
        )
    if mode == "causal" and delta > 1e-5:
        raise ModelLoadError(f"model family '{family}' is not causal after switching back (probe delta {delta:.2e})")
