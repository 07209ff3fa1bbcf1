"""The README is a contract: its runnable shell blocks run, as written, from a fresh copy.

Convention (for README.md, cluster/README.md and any document in DOCS):

* A fenced block whose info string is exactly ``bash`` is *runnable*: it must work from a fresh
  clone in a plain shell (``.venv/bin/...`` or ``source .venv/bin/activate`` at its top; no
  ``.venv/bin`` on PATH is assumed). The blocks of one document run in order in ONE bash
  session (``set -euo pipefail``), so a variable or directory made by one block is there
  for the next, as it is for a reader pasting them in order.
* A block that needs what this machine may lack says so in its info string, and the prose
  beside it says where to get it: ```` ```bash needs-gpu ````, ``needs-api-key``,
  ``needs-cluster`` (a Ray cluster, cloud credentials or kubectl), ``needs-thor`` (an
  AI2-THOR build), ``needs-weights`` (model weights from the hub), ``needs-data`` (a dataset
  that is not generated, e.g. ALFRED). Several may be given. ``ci-entry`` marks CI's own entry
  point (``make test``): CI runs it directly, this test would recurse into it. Markdown
  renderers use the first word only, so the markers are invisible on GitHub; mktestdocs
  (exact language match) would skip such blocks too. Unknown words are an error here, so a
  typo cannot silently skip a block.
* A block may set environment variables for this test only with an HTML comment on the line
  before its fence: ``<!-- readme-test env: RAYRG_X=1 Y=2 -->``; this is the documented way
  to scale a block down in CI (the variables must be ones the commands honour).

How it runs: the working tree as a clone of the next commit would hold it (tracked and
untracked-but-not-ignored files) is copied to a temporary directory, ``.venv`` is linked in,
and the copy's ``rayrg`` is imported first (PYTHONPATH). Each block's wall time is printed
and, with ``RAYRG_README_TIMES=<file>``, written as JSON. ``RAYRG_README_BLOCK_TIMEOUT``
(seconds, default 1800) bounds each block.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "cluster/README.md")
NEEDS = {
    "needs-gpu": "a CUDA GPU",
    "needs-api-key": "an API key in the environment",
    "needs-cluster": "a Ray cluster, cloud credentials or kubectl",
    "needs-thor": "an AI2-THOR build",
    "needs-weights": "model weights from the hub",
    "needs-data": "a dataset that is not generated here",
    "ci-entry": "CI's own entry point (CI runs it directly)",
}
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_ENV_COMMENT = re.compile(r"^\s*<!--\s*readme-test\s+env:(?P<assignments>.*?)-->\s*$")


@dataclass
class Block:
    doc: str
    line: int  # 1-based line of the opening fence
    language: str
    markers: list[str]
    code: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.language == "bash" and not self.markers


def extract_blocks(text: str, doc: str) -> list[Block]:
    """Fenced code blocks with their info-string words and preceding readme-test comment."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, words = match["fence"], match["info"].split()
        env: dict[str, str] = {}
        comment = _ENV_COMMENT.match(lines[i - 1]) if i else None
        if comment:
            for assignment in comment["assignments"].split():
                key, sep, value = assignment.partition("=")
                if not sep or not key:
                    raise ValueError(f"{doc}:{i}: readme-test env needs KEY=VALUE, got {assignment!r}")
                env[key] = value
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        if end == len(lines):
            raise ValueError(f"{doc}:{i + 1}: unclosed code fence")
        blocks.append(Block(doc, i + 1, words[0] if words else "", words[1:],
                            "\n".join(lines[i + 1:end]) + "\n", env))
        i = end + 1
    return blocks


def test_extract_blocks_convention() -> None:
    text = ("# t\n```bash\necho a\n```\n\n```bash needs-gpu\nnvidia-smi\n```\n"
            "<!-- readme-test env: A=1 B=x=y -->\n```bash\necho $A\n```\n````python\n```\n````\n")
    blocks = extract_blocks(text, "t.md")
    assert [(b.line, b.language, b.markers, b.runnable) for b in blocks] == [
        (2, "bash", [], True), (6, "bash", ["needs-gpu"], False), (10, "bash", [], True),
        (13, "python", [], False)]
    assert blocks[2].env == {"A": "1", "B": "x=y"} and blocks[0].code == "echo a\n"
    with pytest.raises(ValueError, match="unclosed"):
        extract_blocks("```bash\necho\n", "t.md")


@pytest.mark.parametrize("doc", DOCS)
def test_shell_blocks_are_runnable_or_marked(doc: str) -> None:
    """Fast: every shell block is plain ``bash`` or carries known markers (no typos)."""
    for block in extract_blocks((ROOT / doc).read_text(), doc):
        if block.language in ("sh", "shell", "console", "zsh"):
            pytest.fail(f"{block.where}: write shell blocks as ```bash (runnable) or ```bash needs-...")
        unknown = [m for m in block.markers if m not in NEEDS]
        assert not unknown, f"{block.where}: unknown marker(s) {unknown}; known: {sorted(NEEDS)}"


def fresh_copy(dest: Path) -> Path:
    """The files a clone of the next commit would hold, plus a link to this checkout's .venv."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file() and not src.is_symlink():  # deleted-but-not-yet-committed files are absent
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)  # keeps mtimes: make must not think pyproject changed
    (dest / ".venv").symlink_to(ROOT / ".venv")
    return dest


def plain_shell_env(copy: Path) -> dict[str, str]:
    """The user's environment without an activated venv; the copy's rayrg imported first."""
    # RAY_ADDRESS: an earlier in-process test's rayrg pinned it to the session's own cluster; a
    # reader's plain shell has none.
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME", "RAY_ADDRESS")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.rstrip("/").endswith(("/.venv/bin", "/bin/.venv")))
    env["PYTHONPATH"] = str(copy)
    env["RAYRG_README_TEST"] = "1"  # a block that runs the test suite must not recurse into this
    return env


def run_blocks(blocks: list[Block], cwd: Path, env: dict[str, str], timeout_s: float,
               log_dir: Path) -> list[dict[str, object]]:
    """Run runnable blocks in order in one bash session; stop at the first failure.

    Each block's output goes to its own log; the session's variables carry over between
    blocks (``declare -p``/``export -p`` saved after each one and sourced before the next).
    """
    state = log_dir / "state.sh"
    state.write_text("")
    results: list[dict[str, object]] = []
    for n, block in enumerate(blocks):
        log = log_dir / f"block{n}.log"
        script = (f"set -euo pipefail\nsource {state}\n"
                  + "".join(f"export {k}={json.dumps(v)}\n" for k, v in block.env.items())
                  + block.code
                  + f"\n{{ declare -p 2>/dev/null | grep -E '^declare (--|-x) [A-Za-z_]+=' "
                    f"| grep -vE ' (BASH[A-Z_]*|SHELLOPTS|EUID|PPID|UID|PWD|OLDPWD|SHLVL|_)=' || true; }}"
                    f" > {state}.new && mv {state}.new {state}\n")
        start = time.monotonic()
        with log.open("w") as out:
            try:
                proc = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, stdout=out,
                                      stderr=subprocess.STDOUT, timeout=timeout_s)
                rc: int | str = proc.returncode
            except subprocess.TimeoutExpired:
                rc = f"timeout after {timeout_s:.0f} s"
        elapsed = time.monotonic() - start
        results.append({"block": block.where, "seconds": round(elapsed, 1), "rc": rc,
                        "first_line": block.code.strip().splitlines()[0] if block.code.strip() else ""})
        print(f"[readme] {block.where}: {elapsed:7.1f} s  rc={rc}  {results[-1]['first_line'][:70]}")
        if rc != 0:
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-40:])
            results[-1]["tail"] = tail
            break
    return results



def test_run_blocks_carries_variables_and_stops_at_first_failure(tmp_path: Path) -> None:
    text = ("```bash\nX=5\nexport Y=6\nmkdir made\n```\n<!-- readme-test env: Z=7 -->\n```bash\n"
            'test "$X$Y$Z" = 567 && test -d made\n```\n```bash\necho before; false; echo after\n```\n'
            "```bash\ntouch never\n```\n")
    blocks = extract_blocks(text, "t.md")
    results = run_blocks(blocks, tmp_path, plain_shell_env(tmp_path), 60, tmp_path)
    assert [r["rc"] for r in results] == [0, 0, 1]  # the fourth block never ran
    assert "before" in str(results[2]["tail"]) and "after" not in str(results[2]["tail"])
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("doc", DOCS)
def test_readme_runnable_blocks_run(doc: str, tmp_path: Path) -> None:
    if os.environ.get("RAYRG_README_TEST"):
        pytest.skip("already inside a README block (a block ran the test suite)")
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("no .venv: run `make install` first (the README's blocks use .venv/bin)")
    blocks = [b for b in extract_blocks((ROOT / doc).read_text(), doc) if b.runnable]
    if not blocks:
        pytest.skip(f"{doc}: no runnable blocks (all marked needs-...)")
    copy = fresh_copy(tmp_path / "clone")
    (tmp_path / "logs").mkdir()
    results = run_blocks(blocks, copy, plain_shell_env(copy),
                         float(os.environ.get("RAYRG_README_BLOCK_TIMEOUT", "1800")), tmp_path / "logs")
    if times := os.environ.get("RAYRG_README_TIMES"):
        path = Path(times)
        saved = json.loads(path.read_text()) if path.exists() else {}
        saved[doc] = results
        path.write_text(json.dumps(saved, indent=2))
    failed = [r for r in results if r["rc"] != 0]
    assert not failed, (f"{failed[0]['block']} failed ({failed[0]['rc']}); last output:\n"
                        f"{failed[0].get('tail', '')}")
