"""Training precision: a stage can run its frozen backbone in bf16 (half the memory and, on GPUs and CPUs with
native bf16 such as AVX512-BF16, faster matmuls) while the LoRA weights, the optimizer state, the LM head's
matmul and the merge at the end stay in fp32.

The fp32 weights are kept aside (on the CPU) while a stage trains on the bf16 copy; when the stage ends, its
LoRA update is added to those fp32 weights. Merging into bf16 weights instead would round most of a small LoRA
update away (bf16 keeps 8 significant bits).
"""

from __future__ import annotations

import torch

from ..devices import native_bf16


def resolve(setting: str, device: torch.device) -> str:
    """``training.mixed_precision`` → what runs: ``bf16`` (bf16 frozen backbone + bf16 autocast), ``fp16``
    (fp16 autocast over fp32 weights) or ``no`` (fp32). ``auto``: bf16 where the device computes it natively
    (GPUs with bf16; CPUs with AVX512-BF16 or AMX), else fp32. What the CPU bf16 path costs in quality and gains in
    speed is measured in docs/benchmarks.md ("Precision")."""
    if setting == "auto":
        return "bf16" if native_bf16(device) else "no"
    return setting


class BF16Backbone:
    """Casts a backbone's parameters to bf16 for a stage, keeping fp32 copies to merge the stage's LoRA into.
    Buffers (e.g. rotary frequencies) stay as they are."""

    def __init__(self, backbone: torch.nn.Module):
        self.masters = {k: v.detach().to("cpu", copy=True) for k, v in backbone.state_dict().items()}
        for p in backbone.parameters():
            p.data = p.data.to(torch.bfloat16)

    def merge(self, peft_model) -> torch.nn.Module:
        """The plain backbone in fp32 with this stage's LoRA added to the fp32 weights (what ``merge_and_unload``
        does on an fp32 model)."""
        from peft.tuners.lora import LoraLayer

        wrapped = peft_model.base_model.model
        deltas = {
            name: module.get_delta_weight("default").float().cpu()
            for name, module in wrapped.named_modules()
            if isinstance(module, LoraLayer) and "default" in getattr(module, "lora_A", {})
        }
        backbone = peft_model.unload()
        for p in backbone.parameters():
            p.data = p.data.float()
        backbone.load_state_dict(self.masters)
        with torch.no_grad():
            for name, delta in deltas.items():
                weight = backbone.get_submodule(name).weight
                weight += delta.to(weight.device)
        return backbone
