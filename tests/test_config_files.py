"""A YAML config file every command reads through one function (``rayrg.config.read_yaml_mapping``):
absent, not valid YAML, or not a mapping is one line and exit code 2, whichever command reads it.

Before, ``rayrg label``, the similarity reports and ``rayrg run`` each read their file by hand:
invalid YAML there was a ``yaml`` traceback, and ``rayrg run`` took a list as its config.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rayrg.cli import main

BAD = {
    "invalid": ("method: [sparse\n", "not valid YAML"),
    "list": ("- method: sparse\n", "expected a mapping at top level, got list"),
}


def _commands(config: Path, tmp_path: Path) -> dict[str, list[str]]:
    data = str(tmp_path / "no-dataset")
    return {
        "label": ["label", "--config", str(config), "--dataset", data, "--out", str(tmp_path / "out")],
        "estimate": ["estimate", "--config", str(config), "--dataset", data],
        "run": ["run", str(config)],
    }


@pytest.mark.parametrize("bad", sorted(BAD))
@pytest.mark.parametrize("command", ["label", "estimate", "run"])
def test_a_bad_config_file_is_one_line(bad: str, command: str, tmp_path: Path, capsys) -> None:
    text, message = BAD[bad]
    config = tmp_path / "config.yaml"
    config.write_text(text)
    assert main(_commands(config, tmp_path)[command]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(config) in err and message in err, err


@pytest.mark.parametrize("command", ["label", "estimate", "run"])
def test_a_missing_config_file_is_one_line(command: str, tmp_path: Path, capsys) -> None:
    config = tmp_path / "absent.yaml"
    assert main(_commands(config, tmp_path)[command]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and f"config file not found: {config}" in err, err


def test_options_file_of_an_import(tmp_path: Path, capsys) -> None:
    options = tmp_path / "options.yaml"
    options.write_text("- a\n")
    assert main(["import", "minari", str(tmp_path / "src"), "--out", str(tmp_path / "out"),
                 "--options", str(options)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "expected a mapping at top level" in err, err
