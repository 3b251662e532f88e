"""The weight fingerprint every cache and resume check uses: the same weights give the same value (in another
process too), and it changes when a weight or a shape changes."""

import subprocess
import sys

import torch

from text2token.fingerprint import model_fingerprint


def _net(seed=0, width=8):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.Linear(width, 2))


def test_same_weights_same_fingerprint_and_any_change_shows():
    a, b = _net(), _net()
    assert model_fingerprint(a) == model_fingerprint(b)
    with torch.no_grad():
        b[1].weight.mul_(1.001)
    assert model_fingerprint(a) != model_fingerprint(b)
    assert model_fingerprint(_net(width=9)) != model_fingerprint(a)  # a shape
    assert model_fingerprint(_net(seed=1)) != model_fingerprint(a)


def test_the_fingerprint_is_stable_across_processes():
    code = (
        "import torch; from text2token.fingerprint import model_fingerprint; torch.manual_seed(0); "
        "net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2)); print(model_fingerprint(net))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == model_fingerprint(_net())
