"""ARCHITECTURE.md stays true: every repository path it names exists."""

from __future__ import annotations

import ast
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


# Modules that may open Parquet or JSON files, and why. Everything else reads another stage's
# outputs only through these (issue: typed contracts between stages).
_MAY_OPEN_FILES = {
    "rayrg/contracts/": "the contracts: the only readers and writers of files one stage writes and another reads",
    "rayrg/data/": "the data-access layer: trajectory shards and the outside formats it imports and exports",
    "rayrg/provenance.py": "its own _provenance.json records",
    "rayrg/rl/checkpoint.py": "the checkpoint format (the one module that owns a checkpoint's files)",
    "rayrg/rewards/rgvlm/cache.py": "the RG-VLM answer cache, private to the labeller",
    "rayrg/models/": "model checkpoints' own config files (not stage outputs)",
    "rayrg/rewards/rgvlm/settings.py": "a model checkpoint's chat template (not a stage output)",
    "rayrg/rewards/rgvlm/backends/_qwen2vl.py": "a model checkpoint's image-processor config",
    "rayrg/storage.py": "the storage layer (it names these functions in docs, opens no stage file)",
    "rayrg/experiments/sweep.py": "sweep_inputs.json, its own record of a sweep's inputs (read to restore it)",
}
_READERS = {("pq", "read_table"), ("pq", "ParquetFile"), ("pq", "read_schema"), ("pq", "read_metadata"),
            ("parquet", "read_table"), ("data", "read_parquet"), ("json", "load")}


def _file_reads(tree: ast.AST) -> list[int]:
    """Lines that open Parquet, or parse a JSON file (``json.load``, ``json.loads(x.read_text())``)."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value
        name = owner.attr if isinstance(owner, ast.Attribute) else owner.id if isinstance(owner, ast.Name) else ""
        if (name, node.func.attr) in _READERS:
            lines.append(node.lineno)
        elif (name, node.func.attr) == ("json", "loads") and node.args and isinstance(node.args[0], ast.Call) \
                and isinstance(node.args[0].func, ast.Attribute) and node.args[0].func.attr == "read_text":
            lines.append(node.lineno)
    return lines


def test_no_stage_opens_another_stages_files_outside_the_contracts() -> None:
    found = []
    for path in sorted((REPO / "rayrg").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if any(rel == allowed or (allowed.endswith("/") and rel.startswith(allowed)) for allowed in _MAY_OPEN_FILES):
            continue
        found += [f"{rel}:{line}" for line in _file_reads(ast.parse(path.read_text()))]
    assert not found, f"files opened outside the contracts and the data-access layer: {found}"
