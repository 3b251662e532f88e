"""devices.py: the --dtype names, and what `auto` loads on each kind of device."""

import pytest
import torch

from text2token import devices
from text2token.modes import DType


def test_every_dtype_name_maps_and_an_unknown_one_names_the_choices():
    assert devices.dtype_from_name("auto") is None
    assert [devices.dtype_from_name(n) for n in DType.values() if n != "auto"] == [
        torch.float32,
        torch.bfloat16,
        torch.float16,
    ]
    with pytest.raises(ValueError, match="auto, float32, bfloat16, float16"):
        devices.dtype_from_name("fp32")


@pytest.mark.parametrize("native", [False, True])
def test_auto_is_bf16_only_on_a_gpu_that_computes_it(monkeypatch, native):
    # A torch.device("cuda") can be named without a GPU; the probe is patched to each answer.
    monkeypatch.setattr(devices, "native_bf16", lambda device: native)
    assert devices.default_dtype(torch.device("cuda")) == (torch.bfloat16 if native else torch.float32)
    assert devices.default_dtype(torch.device("cpu")) == torch.float32  # CPUs encode in fp32, AVX512-BF16 or not


def test_a_gpu_that_only_emulates_bf16_does_not_count_as_native(monkeypatch):
    # torch.cuda.is_bf16_supported() says True on pre-Ampere GPUs, where bf16 is emulated, unless asked not to count it.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert not devices.native_bf16(torch.device("cuda"))
    assert devices.default_dtype(torch.device("cuda")) == torch.float32
