"""The checkpoint format's file names have one home: rayrg/rl/checkpoint.py."""

from __future__ import annotations

import ast
from pathlib import Path

import rayrg
from rayrg.rl import checkpoint

ROOT = Path(rayrg.__file__).parent
OWNER = ROOT / "rl" / "checkpoint.py"
NAMES = {checkpoint.LEARNER_FILE, checkpoint.FEATURIZER_FILE, checkpoint.STEP_FILE,
         checkpoint.FINAL_DIR, f"{checkpoint.FINAL_DIR}.tmp"}


def _spelled_out(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        # "step.txt" anywhere, and "final" where it is joined onto a path (`out / "final"`):
        # the bare word "final" is ordinary English elsewhere.
        if isinstance(node, ast.Constant) and node.value in NAMES - {checkpoint.FINAL_DIR}:
            found.append((node.lineno, node.value))
        elif (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant)
              and node.right.value in NAMES):
            found.append((node.lineno, node.right.value))
    return found


def test_checkpoint_file_names_are_spelled_only_in_checkpoint_py() -> None:
    offenders = [f"{path.relative_to(ROOT.parent)}:{line}: {name!r}"
                 for path in sorted(ROOT.rglob("*.py")) if path != OWNER
                 for line, name in _spelled_out(ast.parse(path.read_text()))]
    assert not offenders, "use rayrg.rl.checkpoint's constants/functions:\n" + "\n".join(offenders)


def test_the_owner_itself_is_seen_by_the_check() -> None:
    # The check finds the names where they are spelled out, so an empty result above means something.
    assert {name for _, name in _spelled_out(ast.parse(OWNER.read_text()))} >= {"step.txt", "learner.pt"}
