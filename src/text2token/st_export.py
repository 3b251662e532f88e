"""Make a saved text2token folder a native sentence-transformers folder as well.

``SentenceTransformer(path)`` then gives the same embeddings as ``Text2TokenModel.from_pretrained(path)``,
with no ``trust_remote_code``, in every setting text2token has:

- pooling: ST's own ``mean`` / ``lasttoken`` / ``weightedmean`` (SGPT position weights) pooling;
- attention: ``is_causal`` in ``config.json`` (transformers >= 5.2 builds bidirectional masks from it);
- a prompt template that wraps the text on both sides (PromptEOL): a one-line chat template, which ST
  renders for plain texts when the module's ``message`` modality is on; ST keeps the template's tail
  when it truncates, as text2token does;
- an isotropy correction (:mod:`text2token.isotropy`): ST's own ``Dense`` module after the pooling (identity
  activation, the correction's affine map), so ST and mteb load the corrected vectors.
"""

from __future__ import annotations

import json
from pathlib import Path

DENSE_FOLDER = "2_Dense"
ST_POOLING = {"mean": "mean", "last": "lasttoken", "weighted_mean": "weightedmean"}


def _jinja_literal(text: str) -> str:
    return "{{ " + json.dumps(text) + " }}" if text else ""


def chat_template_for(template: str, tokenizer) -> str:
    """A Jinja chat template rendering ``template`` around the (non-system) message text, with the
    special tokens the tokenizer adds itself (ST renders with ``add_special_tokens=False``)."""
    prefix, suffix = template.split("{text}", 1)
    with_special = tokenizer("x")["input_ids"]
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    start = with_special.index(plain[0]) if plain and plain[0] in with_special else 0
    head = tokenizer.convert_ids_to_tokens(with_special[:start])
    tail = tokenizer.convert_ids_to_tokens(with_special[start + len(plain) :])
    body = '{% for m in messages %}{% if m["role"] != "system" %}{{ m["content"] }}{% endif %}{% endfor %}'
    return "".join(head) + _jinja_literal(prefix) + body + _jinja_literal(suffix) + "".join(tail)


def write_sentence_transformers_files(
    folder: str | Path, *, pooling: str, template: str | None, max_length: int, hidden_size: int, tokenizer, dense=None
) -> None:
    """Write modules.json, sentence_bert_config.json, 1_Pooling/config.json,
    config_sentence_transformers.json (and chat_template.jinja for a template) into ``folder``; ``dense``: a
    sentence-transformers ``Dense`` module to put after the pooling (saved as ``2_Dense``)."""
    import sentence_transformers

    folder = Path(folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
        },
    ]
    if dense is not None:
        (folder / DENSE_FOLDER).mkdir(exist_ok=True)
        dense.save(str(folder / DENSE_FOLDER))
        kind = type(dense)
        modules.append({"idx": 2, "name": "2", "path": DENSE_FOLDER, "type": f"{kind.__module__}.{kind.__name__}"})
    (folder / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    st_config: dict = {"max_seq_length": max_length}
    if template is not None:
        st_config.update(
            {
                "transformer_task": "feature-extraction",
                "module_output_name": "token_embeddings",
                "modality_config": {
                    "text": {"method": "forward", "method_output_name": "last_hidden_state"},
                    "message": {"method": "forward", "method_output_name": "last_hidden_state", "format": "flat"},
                },
            }
        )
        (folder / "chat_template.jinja").write_text(chat_template_for(template, tokenizer))
    (folder / "sentence_bert_config.json").write_text(json.dumps(st_config, indent=2) + "\n")
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {"embedding_dimension": hidden_size, "pooling_mode": ST_POOLING[pooling], "include_prompt": True}, indent=2
        )
        + "\n"
    )
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "model_type": "SentenceTransformer",
                "__version__": {"sentence_transformers": sentence_transformers.__version__},
                "prompts": {},
                "default_prompt_name": None,
                "similarity_fn_name": "cosine",
            },
            indent=2,
        )
        + "\n"
    )
    tok_config = folder / "tokenizer_config.json"
    if tok_config.is_file():  # text2token pads on the right; make ST do the same
        cfg = json.loads(tok_config.read_text())
        cfg["padding_side"] = "right"
        if template is not None:
            cfg.pop("chat_template", None)  # chat_template.jinja is the one template
        tok_config.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
