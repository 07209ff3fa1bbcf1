"""ARCHITECTURE.md stays true: every repository path it names exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_path_named_in_architecture_md_exists() -> None:
    text = (REPO / "ARCHITECTURE.md").read_text()
    missing = []
    for quoted in re.findall(r"`([^`]+)`", text):
        for part in re.split(r",\s*", quoted):
            if re.fullmatch(r"(rayrg|tests|jobs|cluster|benchmarks)/[\w./*-]*", part) and "*" not in part:
                if not (REPO / part).exists():
                    missing.append(part)
    assert not missing, f"ARCHITECTURE.md names paths that do not exist: {missing}"
    # The registries it points to have the register lines it describes.
    assert "register_backend(" in (REPO / "rayrg/rewards/rgvlm/backends/__init__.py").read_text()
    assert "register_environment(" in (REPO / "rayrg/envs/registry.py").read_text()
    assert "LABEL_METHODS" in (REPO / "rayrg/rewards/registry.py").read_text()


def _contracts() -> dict[str, dict]:
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def _doc_layers() -> list[str]:
    text = (REPO / "ARCHITECTURE.md").read_text()
    table = text.split("<!-- layers:", 1)[1].split("\n\n", 1)[0]
    return [row.split("|")[2].strip() for row in table.splitlines()[3:] if row.startswith("|")]


def test_layers_in_architecture_md_match_the_import_linter_contract() -> None:
    layers = _contracts()["layers"]
    assert layers["type"] == "layers" and layers["containers"] == ["rayrg"] and layers["exhaustive"]
    assert _doc_layers() == layers["layers"]
    # Every package and top-level module of rayrg sits in exactly one layer.
    declared = [name.strip() for layer in layers["layers"] for name in layer.replace("|", ":").split(":")]
    assert len(declared) == len(set(declared))
    present = {p.stem for p in (REPO / "rayrg").iterdir()
               if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    assert present == set(declared)


def test_import_linter_contracts_are_kept() -> None:
    """The contracts hold on this tree: 0 broken (what `make test` runs as `lint-imports`)."""
    import os
    import shutil
    import subprocess
    import sys

    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([exe, "--no-cache"], cwd=REPO, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout
    assert _contracts()["acyclic"]["type"] == "acyclic_siblings"
