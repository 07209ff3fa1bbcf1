"""The ``rayrg`` command end to end in a subprocess (real local Ray cluster)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def rayrg(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "rayrg.cli", *args], capture_output=True, text=True,
                          timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"rayrg {args} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_help_lists_commands() -> None:
    out = rayrg("--help").stdout
    for command in ("generate", "inspect", "windows", "preview-window", "import", "export", "estimate", "browse"):
        assert command in out


def test_importing_cli_loads_no_heavy_dependency() -> None:
    code = ("import sys, rayrg.cli; rayrg.cli.build_parser(); "
            "heavy = [m for m in ('torch', 'transformers', 'ray', 'vllm', 'google.genai', 'minigrid') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.integration
def test_generate_inspect_windows_preview(tmp_path: Path) -> None:
    rayrg("generate", "--out", str(tmp_path / "d"), "--episodes-per-count", "1",
          "--eval-tasks-per-count", "1", "--num-cpus", "2")
    summary = json.loads(rayrg("inspect", str(tmp_path / "d" / "trajectories"), "--json").stdout)
    assert summary["episodes"] == 6
    rayrg("windows", "--dataset", str(tmp_path / "d" / "trajectories"), "--out", str(tmp_path / "w"),
          "--num-cpus", "2")
    rayrg("preview-window", "--windows", str(tmp_path / "w"), "--index", "2", "--out", str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_clear_error_on_bad_dataset(tmp_path: Path) -> None:
    proc = rayrg("inspect", str(tmp_path), check=False)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "metadata.json" in proc.stderr
