"""The fingerprinted cache (text2token.cache) and atomic writes (text2token.textio): a cache built for other
settings is refused naming the settings that differ; a write or a folder that fails midway leaves what was there
before, and nothing half-written under the final name."""

import json
import os

import numpy as np
import pytest

from text2token.cache import CacheMismatch, load_cached, read_fingerprint, save_cached
from text2token.textio import atomic_directory, write_atomic, write_json_atomic


def test_a_cache_round_trips_and_refuses_another_fingerprint_naming_what_differs(tmp_path):
    path = tmp_path / "prior.safetensors"
    fp = {"model": "abc", "texts": 10, "tau": 0.01}
    save_cached(path, {"prior": np.arange(4, dtype=np.float32)}, fp)
    assert read_fingerprint(path) == fp
    np.testing.assert_array_equal(load_cached(path, fp)["prior"], np.arange(4, dtype=np.float32))
    with pytest.raises(CacheMismatch, match=r"built for different settings \(tau, texts: stored tau=0.01, texts=10\)"):
        load_cached(path, {**fp, "texts": 11, "tau": 0.1}, what="prior")
    assert [p.name for p in tmp_path.iterdir()] == ["prior.safetensors"]  # no temporary file left


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_partial(tmp_path):
    final = tmp_path / "summary.json"
    write_json_atomic(final, {"version": 1})

    def fails_midway(tmp):
        tmp.write_text('{"version": 2, "trunc')
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomic(final, fails_midway)
    assert json.loads(final.read_text()) == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_a_failed_folder_keeps_the_previous_folder_and_a_complete_one_replaces_it(tmp_path):
    final = tmp_path / "model"
    with atomic_directory(final) as tmp:
        (tmp / "weights.bin").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_directory(final) as tmp:
        (tmp / "weights.bin").write_bytes(b"ne")
        raise KeyboardInterrupt  # Ctrl-C while the new folder is written
    assert (final / "weights.bin").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with atomic_directory(final) as tmp:
        (tmp / "weights.bin").write_bytes(b"new")
    assert (final / "weights.bin").read_bytes() == b"new"
    mask = os.umask(0)
    os.umask(mask)
    assert (final / "weights.bin").stat().st_mode & 0o777 == 0o666 & ~mask  # the user's umask, not 0600
