"""The per-stage LoRA adapter: attach it to the backbone, read and write its tensors."""

from __future__ import annotations

import torch

from ..errors import ConfigError, Text2TokenError


def attach_lora(lora_cfg, backbone: torch.nn.Module):
    """Wrap ``backbone`` in a fresh peft LoRA (``lora_cfg``: the config's ``lora`` section); returns the peft model.
    Unknown target modules are a config error naming the linear layers the model does have."""
    from peft import LoraConfig, get_peft_model

    available = {n.rsplit(".", 1)[-1] for n, _ in backbone.named_modules()}
    unknown = [m for m in lora_cfg.target_modules if m not in available]
    if unknown:
        raise ConfigError(
            f"config field 'lora.target_modules': {unknown} not found in the model; linear layers include "
            + ", ".join(sorted(n for n in available if n.endswith("proj"))[:12])
        )
    return get_peft_model(
        backbone,
        LoraConfig(
            r=lora_cfg.r,
            lora_alpha=lora_cfg.alpha,
            lora_dropout=lora_cfg.dropout,
            target_modules=list(lora_cfg.target_modules),
            bias="none",
        ),
    )


def merge_adapter(model, lora_cfg, adapter_file) -> None:
    """A saved stage adapter merged into ``model.backbone`` (a Text2TokenModel): a fresh LoRA attached, the saved
    tensors copied in (they must fit exactly), merged and unloaded — as at the end of that stage's training."""
    from safetensors.torch import load_file

    peft_model = attach_lora(lora_cfg, model.backbone)
    apply_adapter(model, load_file(str(adapter_file)), adapter_file)
    model.backbone = peft_model.merge_and_unload()


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable (LoRA) tensors, on the CPU."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def apply_adapter(model: torch.nn.Module, state: dict[str, torch.Tensor], where) -> None:
    """Copy saved adapter tensors into the model's trainable (LoRA) parameters; the two name sets must
    match exactly (both ways), else an error naming ``where`` and a differing tensor."""
    params = dict(model.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    if set(state) != trainable:
        odd = sorted(set(state) ^ trainable)
        raise Text2TokenError(f"{where}: adapter does not fit this model/config (e.g. {odd[0]})")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device))
