"""Unexpected errors and Ctrl-C on the console: one line each, the traceback in a log file.

A bug inside a Ray actor (not a user error) used to print the worker's traceback, Ray's
wrappers and the driver's traceback; Ctrl-C printed a 40-line ``KeyboardInterrupt``. Both
are now one line; the whole traceback goes to the log file the line names (and to the
console with ``-v``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.faulty_backend import FAILURE, STALL_MARKER_ENV

REPO = Path(__file__).resolve().parents[1]
# The driver registers the test backends (rayrg knows neither), then runs the real CLI.
DRIVER = "import sys, tests.faulty_backend; from rayrg.cli import main; sys.exit(main(sys.argv[1:]))"


def _label_args(tmp_path: Path, dataset: Path, backend: str) -> list[str]:
    config = tmp_path / f"{backend}.yaml"
    config.write_text(yaml.safe_dump({"method": "rgvlm", "backend": {"type": backend},
                                      "windows": {"window_size": 4, "stride": 4}}))
    return ["label", "--config", str(config), "--dataset", str(dataset), "--out", str(tmp_path / backend),
            "--num-cpus", "2"]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "RAYRG_LOG_DIR": str(tmp_path / "logs"),
            STALL_MARKER_ENV: str(tmp_path / "stalled")}


# Ray's C++ core worker logs to the driver's stderr on its own (e.g. that an actor pool's
# constructor arguments live in the object store), and so does the GCS server it started, whose
# lines name it (e.g. "(gcs_server) gcs_actor_scheduler.cc:538: Failed to kill actor NIL_ID" as
# the cluster shuts down after an error): not an error report, not Python's logging.
_CORE_LOG = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+ [IWE] \d+ \d+\] (\(\w+\) )?\w+\.cc:\d+: ")


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not _CORE_LOG.match(line)]


def _ctrl_c(args: list[str], tmp_path: Path, ready: Callable[[subprocess.Popen], str]) -> tuple[int, str, str]:
    """Run ``args`` in its own session until ``ready(proc)`` returns (what it read of stdout), then
    send Ctrl-C as a terminal sends it, to the whole process group: (exit code, stdout, stderr)."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env=_env(tmp_path), start_new_session=True)
    try:
        seen = ready(proc)
        os.killpg(proc.pid, signal.SIGINT)
        rest, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, seen + rest, stderr


@pytest.mark.slow
@pytest.mark.integration
def test_an_unexpected_error_in_a_ray_actor_is_one_line_and_a_log(make_toy_dataset, tmp_path: Path) -> None:
    dataset = make_toy_dataset(num_episodes=2, steps=(5, 6), frame_size=16)
    args = _label_args(tmp_path, dataset, "fail")
    proc = subprocess.run([sys.executable, "-c", DRIVER, *args], capture_output=True, text=True, cwd=REPO,
                          env=_env(tmp_path), timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = _lines(proc.stderr)
    assert len(lines) == 1, proc.stderr[-4000:]
    match = re.fullmatch(r"rayrg label: error: RuntimeError: (.+) \(full traceback: (\S+)\)", lines[0])
    assert match, lines[0]
    assert FAILURE in match.group(1)
    log = Path(match.group(2))
    assert log.parent == tmp_path / "logs"
    text = log.read_text()
    # The whole story: the actor's frame that raised, and the driver's command line.
    assert "Traceback" in text and "label_batch" in text and FAILURE in text
    assert "label --config" in text

    verbose = subprocess.run([sys.executable, "-c", DRIVER, "-v", *args], capture_output=True, text=True,
                             cwd=REPO, env=_env(tmp_path), timeout=600)
    assert verbose.returncode == 1
    assert "Traceback" in verbose.stderr and "label_batch" in verbose.stderr
    assert any(line.startswith("rayrg label: error: RuntimeError: ") for line in _lines(verbose.stderr))


@pytest.mark.slow
@pytest.mark.integration
def test_ctrl_c_is_one_line_that_says_the_command_resumes(make_toy_dataset, tmp_path: Path) -> None:
    dataset = make_toy_dataset(num_episodes=2, steps=(5, 6), frame_size=16)
    marker = tmp_path / "stalled"

    def labelling(proc: subprocess.Popen) -> str:
        while not marker.exists():  # the stage is labelling inside a Ray actor
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.5)
        return ""

    code, _, stderr = _ctrl_c([sys.executable, "-c", DRIVER, *_label_args(tmp_path, dataset, "stall")], tmp_path,
                              labelling)
    lines = _lines(stderr)
    assert len(lines) == 1, stderr[-4000:]
    assert lines[0].startswith("rayrg label: interrupted") and "same command" in lines[0] and "resume" in lines[0]
    assert code == 130


@pytest.mark.slow
@pytest.mark.integration
def test_ctrl_c_during_training_is_one_line_and_the_run_resumes(make_toy_dataset, tmp_path: Path) -> None:
    # Ray Train replaces the SIGINT handler of a fit() called from the main thread: Ctrl-C then
    # exited with code 1 and no line of rayrg's (rl/train.py: fit_interruptibly).
    from rayrg.rewards.registry import load_label_config

    method, label = load_label_config({"method": "sparse"})
    labelled = method.run(label, make_toy_dataset(num_episodes=2, steps=(5, 6), frame_size=16), tmp_path / "sparse")
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"observation": "frame", "channels": [4, 8, 8], "batch_size": 8, "hidden": 32,
                                      "text_dim": 8, "report_every": 5, "checkpoint_every": 10,
                                      "reward_column": "reward_sparse", "num_steps": 1_000_000}))
    args = [sys.executable, "-m", "rayrg.cli", "train", "--config", str(config), "--dataset", str(labelled),
            "--out", str(tmp_path / "iql")]

    def checkpointed(proc: subprocess.Popen) -> str:
        seen = []
        for line in proc.stdout:  # type: ignore[union-attr]
            seen.append(line)
            if "checkpoint saved" in line:
                break
        return "".join(seen)

    code, _, stderr = _ctrl_c(args, tmp_path, checkpointed)
    lines = _lines(stderr)
    assert code == 130, stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("rayrg train: interrupted") and "resume" in lines[0], stderr
    code, stdout, stderr = _ctrl_c(args, tmp_path, checkpointed)
    assert code == 130 and re.search(r"resuming from \S+ \(step [1-9]\d*\)", stdout), stdout[-2000:]


@pytest.mark.slow
@pytest.mark.integration
def test_ctrl_c_during_generate_is_one_line_not_a_failure_per_queued_task(tmp_path: Path) -> None:
    # The shard loop released the output's shared-storage marker as Ctrl-C unwound it; the queued
    # shard tasks then started, each failed with NotSharedError, and Ray printed every failure as
    # an "Unhandled error" traceback as the command exited.
    out = tmp_path / "generated"
    args = [sys.executable, "-m", "rayrg.cli", "generate", "--out", str(out), "--episodes-per-count", "400",
            "--num-cpus", "2"]

    def writing(proc: subprocess.Popen) -> str:
        while len(list(out.glob("trajectories/part-*.parquet"))) < 2:  # shards written, more queued
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.2)
        return ""

    code, _, stderr = _ctrl_c(args, tmp_path, writing)
    # tqdm's bar redraws in place (one line on a terminal); rayrg's line may follow it directly.
    lines = _lines(re.sub(r"generate shards:[^\r\n]*?(?=rayrg generate:|[\r\n]|$)", "", stderr).replace("\r", "\n"))
    assert code == 130, stderr[-3000:]
    assert "Unhandled error" not in stderr and "NotSharedError" not in stderr, stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("rayrg generate: interrupted"), stderr[-3000:]


@pytest.mark.slow
@pytest.mark.integration
def test_ctrl_c_during_encode_and_the_same_command_redoes(make_toy_dataset, tmp_path: Path) -> None:
    # Ray Data wrote the features straight into --out: Ctrl-C after its first file left Parquet
    # there and the same command was refused ("is not empty; choose a new --out"). Ray Data writes
    # this dataset's files within the last ~3 s of a ~20 s run (measured), too short a window to
    # aim a Ctrl-C at on a busy 2-core machine (once it landed in the exit: rc 0); so it lands
    # mid-run, and the check is that --out holds no Parquet afterwards and the command redoes.
    from rayrg.models.tiny_clip import build_tiny_clip

    dataset = make_toy_dataset(num_episodes=24, steps=(40, 30), frame_size=64, shards=4)
    out = tmp_path / "feats"
    args = [sys.executable, "-m", "rayrg.cli", "encode", "--dataset", str(dataset), "--out", str(out),
            "--encoder", "clip", "--checkpoint", str(build_tiny_clip(tmp_path / "clip")), "--batch-size", "1",
            "--num-cpus", "2"]

    def started(proc: subprocess.Popen) -> str:  # the stage has begun (its --out prepared)
        while not out.exists():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.2)
        time.sleep(3)
        return ""

    code, _, stderr = _ctrl_c(args, tmp_path, started)
    assert code == 130, stderr[-3000:]
    lines = [line for line in _lines(stderr) if not line.startswith("Loading weights")]  # tqdm, per actor
    assert len(lines) == 1 and lines[0].startswith("rayrg encode: interrupted"), stderr[-3000:]
    assert not list(out.glob("*.parquet"))
    again = subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=_env(tmp_path), timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "encoder.json").exists() and not (tmp_path / ".feats.partial").exists()


@pytest.mark.integration
def test_a_ctrl_c_as_the_command_exits_is_ignored_once(tmp_path: Path) -> None:
    # After the command returned, Ray's atexit shutdown ran with Python's SIGINT handler: a Ctrl-C
    # landing there printed a KeyboardInterrupt traceback from the hook (seen: and a SIGSEGV).
    out = tmp_path / "generated"
    driver = ("import os, signal, sys, time; from rayrg.cli import main\n"
              "code = main()\n"
              "os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the process exits\n"
              "time.sleep(0.5)\n"
              "sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", driver, "generate", "--out", str(out), "--episodes-per-count", "2",
                           "--num-cpus", "2"], capture_output=True, text=True, cwd=REPO, env=_env(tmp_path),
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr, proc.stderr[-3000:]
