"""Export a model to ONNX (run by onnxruntime, optionally int8-quantised) or OpenVINO IR, and embed with it.

The exported graph is the whole embedder up to the sentence vector: ``(input_ids, attention_mask)`` → the backbone
→ this model's pooling → ``sentence_embedding`` (float32, B×H). Tokenization (template, truncation that keeps the
template, padding) runs in Python with the same code as :class:`text2token.model.Text2TokenModel`
(:mod:`text2token.tokenization`), so :class:`ExportedEmbedder` gives ``encode``'s vectors. Every export checks
itself: the exported graph embeds a few texts (short, long and truncated) and the cosine to ``encode`` is
recorded in ``text2token_export.json`` — an export below :data:`MIN_COSINE` is an error, not a folder.

Why not sentence-transformers' ``backend="onnx"/"openvino"``: it goes through optimum, whose current releases
require ``transformers<4.58`` (optimum-onnx 0.1.0) and ``transformers<5.6`` (optimum-intel 2.2.0), older than the
transformers text2token needs; so the graph is exported by ``torch.onnx.export`` (dynamo) and converted by
OpenVINO's own ``openvino.convert_model``, and quantised by ``onnxruntime.quantization.quantize_dynamic``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from . import tokenization
from .errors import ConfigError, Text2TokenError
from .progress import progress_bar
from .textio import atomic_directory
from .version import __version__

EXPORT_CONFIG = "text2token_export.json"
ONNX_FILE, ONNX_INT8_FILE, OPENVINO_FILE = "model.onnx", "model_int8.onnx", "openvino_model.xml"
MIN_COSINE = 0.9999  # an fp32 export must reproduce encode at least this closely
CHECK_TEXTS = [
    "A cat sat on the mat.",
    "Stocks fell sharply after the bank raised rates!",
    "short",
    "word " * 600 + "the end of a text long enough to be truncated.",
]


def _pooled(model):
    import torch

    class Pooled(torch.nn.Module):
        """The embedder as one graph: token ids and mask in, the pooled float32 vector out (isotropy-corrected as
        ``encode``'s, when the model carries a correction)."""

        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model.postprocess(self.model(input_ids, attention_mask))  # the isotropy correction, if any

    return Pooled().eval()


def _export_graph(model, path: Path) -> None:
    import torch

    if model.device.type != "cpu" or next(model.parameters()).dtype != torch.float32:
        raise ConfigError("export a model loaded on the CPU in float32 (--device cpu --dtype float32)")
    example = model.tokenize(CHECK_TEXTS[:2])
    dims = {0: torch.export.Dim("batch", min=1), 1: torch.export.Dim("tokens", min=2)}
    big = sum(p.numel() for p in model.parameters()) * 4 > 1_800_000_000  # protobuf's 2 GB limit: weights beside
    import logging

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed. Skipping ..." notes
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on axis names and deprecations, not actionable
        torch.onnx.export(
            _pooled(model),
            (example["input_ids"], example["attention_mask"]),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_shapes={"input_ids": dims, "attention_mask": dims},
            dynamo=True,
            external_data=big,
            verbose=False,
        )


def quantize_int8(source: Path, target: Path, intermediate_size: int | None) -> list[str]:
    """onnxruntime's dynamic int8 quantisation (weights per output channel, activations per tensor at run time) of
    the graph's linear layers, except the MLP down-projections (weights whose input dimension is
    ``intermediate_size``): their inputs carry the activation outliers of LLMs, and per-tensor int8 there costs
    most of the accuracy (measured: mean cosine to fp32 0.94 with them, 0.99 without). Returns the nodes kept in
    float."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False)
    shapes = {init.name: list(init.dims) for init in graph.graph.initializer}
    linear, skipped = [], []
    for node in graph.graph.node:
        weight = next((x for x in node.input[1:] if x in shapes), None) if node.op_type == "MatMul" else None
        if weight is None or len(shapes[weight]) != 2:
            continue
        (skipped if shapes[weight][0] == intermediate_size else linear).append(node.name)
    logging.disable(logging.WARNING)  # its advice to pre-process the graph (shape inference) is printed each time
    try:
        quantize_dynamic(
            str(source), str(target), weight_type=QuantType.QInt8, per_channel=True, nodes_to_quantize=linear
        )
    finally:
        logging.disable(logging.NOTSET)
    return skipped


def _settings(model) -> dict:

    return {
        "pooling": model.pooling,
        "attention": model.attention,
        "template": model.template,
        "max_length": model.max_length,
        "hidden_size": model.backbone.config.hidden_size,
        "text2token_version": __version__,
        "backbone": model.provenance.get("backbone"),
    }


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def export(
    model, folder: str | Path, *, onnx: bool = True, int8: bool = False, openvino: bool = False, show_progress=False
) -> dict:
    """Write ``folder`` with ``model.onnx`` (and ``model_int8.onnx`` with ``int8``) and/or ``openvino_model.xml``,
    the tokenizer and ``text2token_export.json``; each graph is checked against ``model.encode`` (fp32 exports
    must reach cosine >= :data:`MIN_COSINE`; the int8 one's cosine is recorded). Returns the recorded settings.
    ``show_progress``: a bar naming each step (tracing a graph takes minutes for a 135M model on a CPU)."""
    if not (onnx or openvino):
        raise ConfigError("nothing to export: ask for ONNX and/or OpenVINO")
    folder = Path(folder)
    expected = model.encode(CHECK_TEXTS, batch_size=2)
    info = {**_settings(model), "files": {}, "check_cosine": {}}
    checks = [k for k, on in (("onnx", onnx), ("onnx_int8", int8), ("openvino", openvino)) if on]
    bar = progress_bar(total=1 + int8 + openvino + len(checks), desc="export", disable=not show_progress)

    def step(what: str) -> None:
        bar.set_description(f"export: {what}")

    with atomic_directory(folder) as tmp, bar:
        graph = tmp / ONNX_FILE
        step("tracing the ONNX graph")
        _export_graph(model, graph)
        bar.update()
        if int8:
            step("quantising to int8")
            quantize_int8(graph, tmp / ONNX_INT8_FILE, getattr(model.backbone.config, "intermediate_size", None))
            bar.update()
        if openvino:
            import openvino as ov

            step("converting to OpenVINO")
            ov.save_model(ov.convert_model(str(graph)), str(tmp / OPENVINO_FILE), compress_to_fp16=False)
            bar.update()
        if not onnx:
            graph.unlink()
            for extra in tmp.glob(ONNX_FILE + ".data"):
                extra.unlink()
        model.tokenizer.save_pretrained(tmp)
        (tmp / EXPORT_CONFIG).write_text(json.dumps(info, indent=2) + "\n")
        for kind, present in (("onnx", onnx), ("onnx_int8", int8), ("openvino", openvino)):
            if not present:
                continue
            step(f"checking the {kind} graph against encode")
            got = ExportedEmbedder(tmp, kind).encode(CHECK_TEXTS, batch_size=2)
            bar.update()
            cosine = float(_cosines(got, expected).min())
            info["check_cosine"][kind] = round(cosine, 6)
            info["files"][kind] = {"onnx": ONNX_FILE, "onnx_int8": ONNX_INT8_FILE, "openvino": OPENVINO_FILE}[kind]
            if kind != "onnx_int8" and cosine < MIN_COSINE:
                raise Text2TokenError(
                    f"the {kind} export does not reproduce encode (cosine {cosine:.6f} < "
                    f"{MIN_COSINE}); nothing was written"
                )
        (tmp / EXPORT_CONFIG).write_text(json.dumps(info, indent=2) + "\n")
    return info


class ExportedEmbedder:
    """Embed with an exported folder: ``kind`` = ``onnx`` (onnxruntime), ``onnx_int8`` or ``openvino``; ``encode``
    takes and returns what ``Text2TokenModel.encode`` does (float32 N×H, rows in input order).

    ``openvino_precision``: OpenVINO's CPU inference precision. ``f32`` (the default here) computes as exported;
    ``bf16`` is OpenVINO's own default on CPUs with native bf16 (faster, cosine ~0.9998 to fp32 encode)."""

    def __init__(
        self, folder: str | Path, kind: str = "onnx", threads: int | None = None, openvino_precision: str = "f32"
    ):
        from transformers import AutoTokenizer

        self.folder = Path(folder)
        try:
            self.settings = json.loads((self.folder / EXPORT_CONFIG).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise Text2TokenError(f"{self.folder} is not an exported text2token folder (no {EXPORT_CONFIG})") from None
        files = {"onnx": ONNX_FILE, "onnx_int8": ONNX_INT8_FILE, "openvino": OPENVINO_FILE}
        if kind not in files:
            raise ConfigError(f"kind must be one of {', '.join(files)}, got '{kind}'")
        path = self.folder / files[kind]
        if not path.is_file():
            raise Text2TokenError(f"{self.folder} has no {files[kind]} (export it with the matching option)")
        self.kind = kind
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        self.template, self.max_length = self.settings["template"], int(self.settings["max_length"])
        self._overhead = (
            tokenization.template_overhead(self.tokenizer, self.template) if self.template is not None else None
        )
        if kind == "openvino":
            import openvino as ov

            if openvino_precision not in ("f32", "bf16", "f16"):
                raise ConfigError(f"openvino_precision must be f32, bf16 or f16, got '{openvino_precision}'")
            config = {"INFERENCE_PRECISION_HINT": openvino_precision}
            if threads:
                config["INFERENCE_NUM_THREADS"] = threads
            self._compiled = ov.Core().compile_model(str(path), "CPU", config)
            self._run = lambda ids, mask: self._compiled({"input_ids": ids, "attention_mask": mask})[0]
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self._run = lambda ids, mask: session.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    def encode(
        self, texts: str | list[str], batch_size: int = 32, normalize_embeddings: bool = False, **_ignored
    ) -> np.ndarray:
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        out = np.empty((len(texts), int(self.settings["hidden_size"])), dtype=np.float32)
        ids = (
            tokenization.token_ids(self.tokenizer, texts, self.template, self.max_length, self._overhead)
            if texts
            else []
        )
        for rows in tokenization.length_sorted_batches(ids, batch_size):
            input_ids, mask = tokenization.pad(self.tokenizer, [ids[r] for r in rows])
            out[rows] = self._run(input_ids, mask)
        if normalize_embeddings:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out[0] if single else out
