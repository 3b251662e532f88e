"""Property-based fuzzing of what users hand the readers: any bytes as a .txt / .jsonl corpus (texts, ids, query
files) and any text as a config file give a result or one clear text2token error — never a traceback from deep
inside (issue 26)."""

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from text2token.errors import ConfigError, InputFileError, Text2TokenError
from text2token.textio import read_records, read_texts
from text2token.training import RunConfig, load_config

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@FUZZ
@given(
    data=st.binary(max_size=400),
    suffix=st.sampled_from([".txt", ".jsonl"]),
    skip_blank=st.booleans(),
    errors=st.sampled_from(["strict", "replace"]),
)
def test_any_bytes_as_a_corpus_give_texts_or_one_input_error(tmp_path, data, suffix, skip_blank, errors):
    path = tmp_path / f"{uuid.uuid4().hex}{suffix}"
    path.write_bytes(data)
    try:
        texts = read_texts(path, skip_blank=skip_blank, errors=errors)
    except InputFileError as exc:
        assert path.name in str(exc)  # the error names the file (and the line where there is one)
        return
    assert texts and all(isinstance(t, str) and t.strip() for t in texts)


@FUZZ
@given(
    rows=st.lists(
        st.one_of(JSONISH.map(lambda v: __import__("json").dumps(v)), st.text(max_size=30)), min_size=0, max_size=6
    )
)
def test_any_jsonl_lines_give_records_or_one_input_error(tmp_path, rows):
    path = tmp_path / f"{uuid.uuid4().hex}.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    try:
        ids, texts, _ = read_records(path)
    except InputFileError as exc:
        assert path.name in str(exc)
        return
    assert len(ids) == len(texts) == len(set(ids)) and all(isinstance(t, str) and t.strip() for t in texts)


@FUZZ
@given(
    tree=st.dictionaries(
        st.sampled_from(
            [
                "model",
                "training",
                "stage1",
                "stage2",
                "data",
                "lora",
                "objective",
                "stages",
                "simcse",
                "combined",
                "mntp",
                "bogus",
            ]
        ),
        JSONISH,
        max_size=4,
    )
)
def test_any_config_tree_gives_a_config_or_one_config_error(tmp_path, tree):
    import yaml

    path = tmp_path / f"{uuid.uuid4().hex}.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
        return
    assert isinstance(cfg, RunConfig)
    cfg.validate()  # what was accepted is valid


@FUZZ
@given(text=st.text(max_size=200))
def test_any_text_as_a_config_file_gives_a_config_or_one_error(tmp_path, text):
    path = tmp_path / f"{uuid.uuid4().hex}.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path)
    except Text2TokenError as exc:
        assert str(exc)
