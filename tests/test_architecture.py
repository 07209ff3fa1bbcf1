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
