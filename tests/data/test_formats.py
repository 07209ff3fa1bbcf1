"""Dataset formats (rayrg.data.formats): ALFRED is one like LeRobot and Minari, with typed options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rayrg.cli import main
from rayrg.config import ConfigError
from rayrg.data.access import Dataset
from rayrg.data.alfred import AlfredImportOptions
from rayrg.data.formats import FORMATS, get_format, import_options
from rayrg.provenance import read_record
from tests.data._alfred_synth import PLAN_LOW, traj_data, write_trial


@pytest.fixture()
def alfred_root(tmp_path: Path) -> Path:
    root = tmp_path / "alfred"
    write_trial(root, "train", "pick_apple-1", "trial_A", traj_data())
    write_trial(root, "train", "pick_apple-2", "trial_B", traj_data(extra_frames=2))
    write_trial(root, "train", "broken", "no_json", None, num_images=3)
    return root


def test_rayrg_import_alfred_writes_the_dataset_and_its_tasks(alfred_root: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    options = tmp_path / "alfred.yaml"
    options.write_text("split: train\ninstruction: task_desc\n")
    assert main(["import", "alfred", str(alfred_root), "--out", str(tmp_path / "out"), "--options", str(options),
                 "--option", "use_ray=false", "--option", "instruction=high_descs"]) == 0
    printed = capsys.readouterr().out
    assert "2 episodes" in printed and "skipped trials: 1" in printed
    data = Dataset.open(tmp_path / "out" / "trajectories")
    assert data.metadata.num_transitions == 2 * len(PLAN_LOW)
    # --option overrides the file; the import is keyed to the typed options it ran with
    assert read_record(tmp_path / "out")["inputs"]["config"]["instruction"] == "high_descs"
    assert json.loads((tmp_path / "out" / "eval_tasks.json").read_text())


def test_the_alias_is_the_same_import(alfred_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["import", "alfred", str(alfred_root), "--out", str(tmp_path / "a"), "--option", "split=train",
                 "--option", "use_ray=false"]) == 0
    assert main(["alfred-import", "--root", str(alfred_root), "--split", "train", "--no-ray",
                 "--out", str(tmp_path / "b")]) == 0
    assert read_record(tmp_path / "a")["fingerprint"] == read_record(tmp_path / "b")["fingerprint"]


@pytest.mark.parametrize("fmt", ["alfred", "lerobot", "minari"])
def test_an_unknown_option_is_one_line_listing_the_valid_ones(fmt: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    assert main(["import", fmt, str(tmp_path), "--out", str(tmp_path / "o"), "--option", "splt=train"]) == 2
    err = capsys.readouterr().err.strip()
    valid = ", ".join(get_format(fmt).import_options.model_fields)
    assert err.endswith(f"import {fmt}: unknown option splt; valid: {valid}") and "\n" not in err, err
    assert not (tmp_path / "o").exists()


def test_options_are_typed_and_forbid_extras() -> None:
    fmt = get_format("alfred")
    typed = import_options(fmt, {"split": "valid_seen", "max-trials": 3}, "here")
    assert isinstance(typed, AlfredImportOptions) and typed.max_trials == 3
    with pytest.raises(ConfigError, match="max_trials"):
        import_options(fmt, {"max_trials": 0}, "here")
    for name in FORMATS:
        opts = get_format(name).import_options
        assert opts.model_config["extra"] == "forbid"


def test_export_of_an_import_only_format_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", "alfred", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().endswith("export alfred: the alfred format imports only; it has no export")
