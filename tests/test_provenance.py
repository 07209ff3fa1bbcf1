"""Provenance (rayrg.provenance): skip what is done, resume what is unfinished, refuse or
redo what was made from other inputs — and never clear a directory rayrg did not make."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rayrg.provenance import (
    RECORD_FILE,
    StaleOutputError,
    claim,
    dataset_fingerprint,
    describe_changes,
)


def test_claim_new_resume_done(tmp_path: Path) -> None:
    out = tmp_path / "stage"
    first = claim(out, "s", {"a": 1})
    assert first.status == "new"
    (out / "part.parquet").write_text("half")
    again = claim(out, "s", {"a": 1})  # not finished: same inputs resume, files kept
    assert again.status == "resume" and (out / "part.parquet").exists()
    again.finish(rows=3)
    done = claim(out, "s", {"a": 1})
    assert done.done and done.record["result"] == {"rows": 3}
    assert done.fingerprint == first.fingerprint == claim(out, "s", {"a": 1}).fingerprint


def test_changed_inputs_are_refused_with_what_changed_then_redone_keeping_caches(tmp_path: Path) -> None:
    out = tmp_path / "stage"
    claim(out, "label rgvlm", {"config": {"model": "a", "temperature": 0.0}}).finish()
    (out / "part.parquet").write_text("old labels")
    (out / "_cache").mkdir()
    (out / "_cache" / "answer.json").write_text("paid for")
    with pytest.raises(StaleOutputError) as err:
        claim(out, "label rgvlm", {"config": {"model": "b", "temperature": 0.0}})
    message = str(err.value)
    assert "\n" not in message
    assert 'config.model: "a" → "b"' in message and "--overwrite" in message
    assert (out / "part.parquet").exists()  # refusing touches nothing
    redo = claim(out, "label rgvlm", {"config": {"model": "b", "temperature": 0.0}}, on_change="redo",
                 keep=("_cache",))
    assert redo.status == "redo"
    assert not (out / "part.parquet").exists() and (out / "_cache" / "answer.json").read_text() == "paid for"
    assert json.loads((out / RECORD_FILE).read_text())["complete"] is False


def test_a_directory_rayrg_did_not_make_is_never_cleared(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(StaleOutputError, match="no _provenance.json"):
        claim(tmp_path, "generate", {"a": 1}, on_change="redo")
    assert (tmp_path / "thesis.tex").read_text() == "precious"


def test_describe_changes_names_the_first_leaves() -> None:
    text = describe_changes({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"b": 2, "c": 2}, "e": 1})
    assert text == "a.b: 1 → 2; d: removed; e: added"


def test_dataset_fingerprint_recorded_or_content(make_toy_dataset, tmp_path: Path) -> None:
    d = make_toy_dataset(seed=3)
    content = dataset_fingerprint(d)
    assert content.startswith("content:") and content == dataset_fingerprint(d)
    other = make_toy_dataset(seed=4)
    assert dataset_fingerprint(other) != content
    meta = json.loads((d / "metadata.json").read_text())
    (d / "metadata.json").write_text(json.dumps({**meta, "fingerprint": "abc"}))
    assert dataset_fingerprint(d) == "abc"
