"""ONNX / OpenVINO export: the exported graphs (onnxruntime, OpenVINO, int8) embed as encode does, through the real
exporters and runtimes; the CLI writes the folder and refuses what it cannot do in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import PROBE_TEXTS, with_correction

from text2token import Text2TokenModel
from text2token.cli import main

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytest.importorskip("openvino")

TEXTS = [*PROBE_TEXTS, "x"]


def _cos(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.slow
@pytest.mark.parametrize("pooling,attention", [("last", "causal"), ("mean", "bidirectional")])
def test_exported_graphs_embed_as_encode(tmp_path, tiny_model_dir, pooling, attention):
    from text2token.onnx_export import EXPORT_CONFIG, ExportedEmbedder, export

    model = Text2TokenModel.from_pretrained(
        str(tiny_model_dir), pooling=pooling, attention=attention, max_length=48, device="cpu"
    )
    if attention == "bidirectional":  # one case with an isotropy correction: the graph must carry it
        with_correction(model)
    info = export(model, tmp_path / "exp", int8=True, openvino=True)
    expected = model.encode(TEXTS, batch_size=4)
    for kind in ("onnx", "openvino"):
        got = ExportedEmbedder(tmp_path / "exp", kind).encode(TEXTS, batch_size=3)  # other batches than encode's
        assert got.shape == expected.shape and got.dtype == np.float32
        assert _cos(got, expected).min() >= 0.9999, kind
    from text2token.onnx_export import quantize_int8

    kept = quantize_int8(
        tmp_path / "exp" / "model.onnx", tmp_path / "again.onnx", model.backbone.config.intermediate_size
    )
    assert len(kept) == model.backbone.config.num_hidden_layers  # one MLP down-projection per layer stays float
    int8 = ExportedEmbedder(tmp_path / "exp", "onnx_int8").encode(TEXTS)
    assert np.isfinite(int8).all() and int8.shape == expected.shape
    assert (tmp_path / "exp" / "model_int8.onnx").stat().st_size < (tmp_path / "exp" / "model.onnx").stat().st_size
    recorded = json.loads((tmp_path / "exp" / EXPORT_CONFIG).read_text())
    assert recorded["pooling"] == pooling and recorded["attention"] == attention and recorded["max_length"] == 48
    assert recorded["backbone"] == str(tiny_model_dir)  # where the exported weights came from
    assert recorded["check_cosine"]["onnx"] >= 0.9999 and set(recorded["files"]) == {"onnx", "onnx_int8", "openvino"}
    assert info["files"] == recorded["files"]
    one = ExportedEmbedder(tmp_path / "exp").encode(TEXTS[0], normalize_embeddings=True)
    assert one.shape == (expected.shape[1],) and abs(np.linalg.norm(one) - 1) < 1e-5


@pytest.mark.slow
def test_export_cli_and_its_errors(tmp_path, tiny_model_dir, capsys):
    from text2token.onnx_export import ExportedEmbedder

    model = Text2TokenModel.from_pretrained(str(tiny_model_dir), pooling="last", max_length=48, device="cpu")
    model.save_pretrained(tmp_path / "model")
    assert main(["export", "--model", str(tmp_path / "model"), "--openvino", str(tmp_path / "ov")]) == 0
    assert "openvino cosine" in capsys.readouterr().out
    assert not (tmp_path / "ov" / "model.onnx").exists()  # only what was asked for
    got = ExportedEmbedder(tmp_path / "ov", "openvino").encode(TEXTS)
    assert _cos(got, model.encode(TEXTS)).min() >= 0.9999
    with pytest.raises(Exception, match="has no model.onnx"):
        ExportedEmbedder(tmp_path / "ov", "onnx")
    with pytest.raises(Exception, match="not an exported text2token folder"):
        ExportedEmbedder(tmp_path / "model")
    assert main(["export", "--index", str(tmp_path / "ix"), "--onnx", str(tmp_path / "o")]) == 2
    assert "give --model" in capsys.readouterr().err
    assert main(["export", "--model", str(tmp_path / "model"), "--qdrant-path", str(tmp_path / "q")]) == 2
    assert "give --index" in capsys.readouterr().err
    assert main(["export", "--model", str(tmp_path / "model"), "--openvino", str(tmp_path / "o"), "--int8"]) == 2
    assert "--int8 goes with --onnx" in capsys.readouterr().err
