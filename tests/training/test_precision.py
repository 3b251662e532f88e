"""The bf16 frozen backbone: bf16 parameters while a stage trains, fp32 LoRA and optimizer state, the LoRA update
merged into the fp32 weights (not rounded into bf16), resume still bitwise on CPU."""

import copy
import json

import numpy as np
import torch
from helpers import SENTENCES, tiny_run_config
from safetensors.torch import load_file

from text2token import Text2TokenModel
from text2token.training import train
from text2token.training.lora import attach_lora
from text2token.training.precision import BF16Backbone, resolve


def _random_adapter(peft_model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in peft_model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def test_bf16_stage_merges_into_the_fp32_weights(tiny_model_dir):
    from text2token.training.config import LoraConfig

    lora = LoraConfig(r=4, alpha=8, dropout=0.0)
    ref = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="mean", device="cpu").backbone
    ours = copy.deepcopy(ref)
    expected = attach_lora(lora, ref)
    _random_adapter(expected)
    expected = expected.merge_and_unload()  # fp32 merge: the reference

    bf16 = BF16Backbone(ours)
    assert all(p.dtype == torch.bfloat16 for p in ours.parameters())
    assert all(b.dtype == torch.float32 for b in ours.buffers() if b.is_floating_point()), "buffers keep their dtype"
    peft_model = attach_lora(lora, ours)
    assert all(p.dtype == torch.float32 for p in peft_model.parameters() if p.requires_grad), "LoRA stays fp32"
    _random_adapter(peft_model)
    merged = bf16.merge(peft_model)
    got, want = merged.state_dict(), expected.state_dict()
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == torch.float32
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6, msg=k)


def test_bf16_training_runs_resumes_bitwise_and_saves_fp32(tmp_path, tiny_model_dir):
    common = ["training.mixed_precision=bf16", "lora.dropout=0.1"]
    straight_dir, part_dir = tmp_path / "a", tmp_path / "b"
    straight_dir.mkdir()
    part_dir.mkdir()
    straight = train(tiny_run_config(straight_dir, tiny_model_dir, *common, "stage1.steps=6"), show_progress_bar=False)
    train(tiny_run_config(part_dir, tiny_model_dir, *common, "stage1.steps=4"), show_progress_bar=False)
    resumed = train(
        tiny_run_config(part_dir, tiny_model_dir, *common, "stage1.steps=6"), resume=True, show_progress_bar=False
    )
    a, b = (load_file(str(d / "run" / "stage1-data" / "adapter_final.safetensors")) for d in (straight_dir, part_dir))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(t.dtype == torch.float32 for t in a.values())
    summary = json.loads((straight_dir / "run" / "train_summary.json").read_text())
    assert summary["mixed_precision"] == "bf16"
    saved = load_file(str(straight / "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in saved.values() if t.is_floating_point())
    np.testing.assert_array_equal(
        Text2TokenModel.from_pretrained(str(straight), device="cpu").encode(SENTENCES[:3]),
        Text2TokenModel.from_pretrained(str(resumed), device="cpu").encode(SENTENCES[:3]),
    )


def test_auto_precision_is_bf16_where_the_device_has_it():
    from text2token.devices import native_bf16

    cpu = torch.device("cpu")
    assert resolve("auto", cpu) == ("bf16" if native_bf16(cpu) else "no")
    assert resolve("bf16", cpu) == "bf16" and resolve("no", torch.device("cuda")) == "no"


def test_the_stage_2_prior_cache_is_keyed_by_the_precision_it_was_computed_in(tmp_path, tiny_model_dir, monkeypatch):
    from text2token.cache import read_fingerprint

    monkeypatch.setenv("TEXT2TOKEN_HOME", str(tmp_path / "home"))  # one shared prior cache for both runs
    dtypes = {}
    for mp in ("no", "bf16"):
        (tmp_path / mp).mkdir()
        train(
            tiny_run_config(
                tmp_path / mp,
                tiny_model_dir,
                "stages=[model]",
                "stage2.steps=1",
                "stage2.max_texts=16",
                f"training.mixed_precision={mp}",
            ),
            show_progress_bar=False,
        )
        dtypes[mp] = read_fingerprint(tmp_path / mp / "run" / "stage2-model" / "prior.safetensors")["dtype"]
    assert dtypes == {"no": "torch.float32", "bf16": "torch.bfloat16"}  # the fp32 prior was not reused in bf16
    assert len(list((tmp_path / "home" / "priors").glob("prior-*.safetensors"))) == 2
