"""Bad input gets one clear line on every path: the driver's readers and Ray Data tasks alike.

Each kind of bad dataset is made from one small valid dataset, then given to every command
that reads trajectories. The message must name the shard (and the row where one applies),
be one line, carry no traceback, and be the same whichever process found the fault.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

SHARD = "part-00000.parquet"


def _rewrite(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path)  # not write_shard: these tables break the format on purpose


def _undecodable_image(d: Path) -> str:
    t = pq.read_table(d / SHARD)
    frames = t.column("frame").to_pylist()
    frames[2] = b"\x89PNG\r\n\x1a\n truncated"
    _rewrite(t.set_column(t.column_names.index("frame"), "frame", pa.array(frames, pa.binary())), d / SHARD)
    return "row 2"


def _step_gap(d: Path) -> str:
    t = pq.read_table(d / SHARD)
    steps = t.column("step").to_pylist()
    steps[3] = 7
    _rewrite(t.set_column(t.column_names.index("step"), "step", pa.array(steps, pa.int32())), d / SHARD)
    return "row 3"


def _null(d: Path) -> str:
    t = pq.read_table(d / SHARD)
    ids = t.column("task_id").to_pylist()
    ids[1] = None
    _rewrite(t.set_column(t.column_names.index("task_id"), pa.field("task_id", pa.string()),
                          pa.array(ids, pa.string())), d / SHARD)
    return "row 1"


def _wrong_type(d: Path) -> str:
    t = pq.read_table(d / SHARD)
    i = t.column_names.index("action")
    _rewrite(t.set_column(i, "action", t.column("action").cast(pa.int64())), d / SHARD)
    return "'action'"


def _missing_column(d: Path) -> str:
    t = pq.read_table(d / SHARD)
    _rewrite(t.drop_columns(["action_name"]), d / SHARD)
    return "action_name"


def _truncated(d: Path) -> str:
    data = (d / SHARD).read_bytes()
    (d / SHARD).write_bytes(data[: len(data) // 2])
    return "Parquet"


def _not_parquet(d: Path) -> str:
    (d / SHARD).write_text("episode_id,step\nx,0\n")
    return "Parquet"


def _empty(d: Path) -> str:
    for shard in d.glob("*.parquet"):
        _rewrite(pq.read_table(shard).slice(0, 0), shard)
    return "empty"


CORRUPTIONS: dict[str, Callable[[Path], str]] = {
    "undecodable-image": _undecodable_image, "step-gap": _step_gap, "null": _null,
    "wrong-type": _wrong_type, "missing-column": _missing_column, "truncated": _truncated,
    "not-parquet": _not_parquet, "empty": _empty,
}


@pytest.fixture(scope="module")
def valid_dataset(make_toy_dataset) -> Path:
    # Shard 0 holds episodes 0 and 2 (5 and 12 steps): rows 1-3 lie in episode 0.
    return make_toy_dataset(num_episodes=4, steps=(5, 9, 12, 3), frame_size=16)


@pytest.fixture
def bad_dataset(request, valid_dataset: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    kind = request.param
    d = tmp_path / f"bad-{kind}"
    shutil.copytree(valid_dataset, d)
    expected = CORRUPTIONS[kind](d)
    shard = "part-" if kind == "empty" else SHARD  # an empty dataset: every shard is
    return d, [shard, expected]


def _one_line(err: str, expected: list[str]) -> str:
    """The rayrg line of ``err``: exactly one, naming everything expected, no traceback."""
    # In-process only: a Ray Data log handler made under an earlier test's capture writes to
    # that closed stream, and `logging` reports it with a traceback of its own (pytest's
    # artefact, not rayrg's output; the subprocess test checks stderr as a user sees it).
    err = re.sub(r"--- Logging error ---\n.*?\nArguments: [^\n]*\n", "", err, flags=re.DOTALL)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("rayrg ")]
    assert len(lines) == 1, err
    line = lines[0]
    assert ": error: " in line
    for part in expected:
        assert part in line, (part, line)
    return line


def _label_config(tmp_path: Path, body: str) -> str:
    path = tmp_path / "label.yaml"
    path.write_text(body)
    return str(path)


# Structural faults are found on the driver; an undecodable frame only where frames are
# decoded: `inspect --validate-images`, and the Ray Data tasks of windows and rgvlm.
DRIVER_ONLY = [k for k in CORRUPTIONS if k != "undecodable-image"]


@pytest.mark.parametrize("bad_dataset", list(CORRUPTIONS), indirect=True)
def test_inspect(bad_dataset, capsys) -> None:
    from rayrg.cli import main

    d, expected = bad_dataset
    assert main(["inspect", str(d), "--validate-images"]) == 2
    _one_line(capsys.readouterr().err, expected)


@pytest.mark.parametrize("bad_dataset", DRIVER_ONLY, indirect=True)
def test_label_sparse(bad_dataset, tmp_path: Path, capsys) -> None:
    from rayrg.cli import main

    d, expected = bad_dataset
    out = tmp_path / "out"
    assert main(["label", "--config", _label_config(tmp_path, "method: sparse\n"), "--dataset", str(d),
                 "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, expected)
    assert not list(out.glob("*.parquet")), "nothing may be written from a bad dataset"


@pytest.mark.parametrize("bad_dataset", list(CORRUPTIONS), indirect=True)
def test_windows_in_ray_data(bad_dataset, ray_local, tmp_path: Path, capsys) -> None:
    from rayrg.cli import main

    d, expected = bad_dataset
    out = tmp_path / "windows"
    assert main(["windows", "--dataset", str(d), "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, expected)


@pytest.mark.parametrize("bad_dataset", ["undecodable-image", "step-gap", "truncated"], indirect=True)
def test_label_rgvlm_in_ray_data(bad_dataset, ray_local, tmp_path: Path, capsys) -> None:
    """The RG-VLM path reads frames in Ray Data tasks; the server is asked only what it serves
    (the model identity, for the fingerprint) and never for an answer (nothing to label)."""
    from rayrg.cli import main
    from rayrg.rewards.rgvlm.loopback import LoopbackServer

    d, expected = bad_dataset
    with LoopbackServer() as server:
        config = _label_config(tmp_path, f"method: rgvlm\nbackend:\n  type: openai\n"
                                         f"  base_url: {server.base_url}\n  model: loopback-vlm\n")
        assert main(["label", "--config", config, "--dataset", str(d), "--out", str(tmp_path / "out")]) == 2
        assert server.stats.requests == 0
    _one_line(capsys.readouterr().err, expected)


def test_same_line_on_driver_and_in_ray_data(valid_dataset: Path, ray_local, tmp_path: Path, capsys) -> None:
    """`inspect` decodes on the driver, `windows` in a Ray Data task: one identical message."""
    from rayrg.cli import main

    d = tmp_path / "bad"
    shutil.copytree(valid_dataset, d)
    _undecodable_image(d)
    main(["inspect", str(d), "--validate-images"])
    on_driver = _one_line(capsys.readouterr().err, [SHARD, "row 2"]).split(": error: ", 1)[1]
    main(["windows", "--dataset", str(d), "--out", str(tmp_path / "w")])
    in_task = _one_line(capsys.readouterr().err, [SHARD, "row 2"]).split(": error: ", 1)[1]
    assert on_driver == in_task


def test_failed_windows_leave_nothing_half_written(valid_dataset: Path, ray_local, tmp_path: Path,
                                                  capsys) -> None:
    """Shard 1 is fine and shard 0 is not: no window of either reaches ``out``."""
    from rayrg.cli import main

    d = tmp_path / "data"
    shutil.copytree(valid_dataset, d)
    _undecodable_image(d)
    out = tmp_path / "windows"
    assert main(["windows", "--dataset", str(d), "--out", str(out)]) == 2
    capsys.readouterr()
    assert not out.exists() or not list(out.glob("*.parquet"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", *(["windows"] if out.exists() else [])]


@pytest.mark.slow
def test_windows_subprocess_stderr_has_no_traceback(valid_dataset: Path, tmp_path: Path) -> None:
    """The whole of stderr, Ray's own output included, as a user sees it."""
    d = tmp_path / "bad"
    shutil.copytree(valid_dataset, d)
    _undecodable_image(d)
    run = subprocess.run([sys.executable, "-m", "rayrg.cli", "windows", "--dataset", str(d), "--out",
                          str(tmp_path / "w"), "--num-cpus", "2"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr + run.stdout
    assert run.stderr.strip().splitlines()[-1].startswith("rayrg windows: error: ")
    _one_line(run.stderr, [SHARD, "row 2"])
    verbose = subprocess.run([sys.executable, "-m", "rayrg.cli", "-v", "windows", "--dataset", str(d), "--out",
                              str(tmp_path / "w")], capture_output=True, text=True, timeout=300)
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr


class _DyingActor:
    def __init__(self, path: str) -> None:
        from rayrg.data.schema import DatasetError

        raise DatasetError(f"{path}: row 4: null in non-nullable column 'task_id'")

    def ping(self) -> int:
        return 1


def _raise_in_task(path: str) -> None:
    raise FileNotFoundError(f"policy '{path}': not 'expert', 'random' or an existing checkpoint directory")


def test_errors_raised_in_actors_and_tasks_come_back_as_themselves(ray_local) -> None:
    """Ray pickles away ``__cause__``: an actor's constructor error arrives as ActorDiedError
    text, a task's as RayTaskError. Both are rebuilt as the user's own exception."""
    import ray

    from rayrg.data.schema import DatasetError
    from rayrg.errors import stage_errors

    actor = ray.remote(num_cpus=0)(_DyingActor).remote("/data/part-00003.parquet")
    with pytest.raises(DatasetError) as info, stage_errors():
        ray.get(actor.ping.remote())
    assert str(info.value) == "/data/part-00003.parquet: row 4: null in non-nullable column 'task_id'"
    with pytest.raises(FileNotFoundError) as missing, stage_errors():
        ray.get(ray.remote(num_cpus=0)(_raise_in_task).remote("runs/x/final"))
    assert str(missing.value) == ("policy 'runs/x/final': not 'expert', 'random' or an existing "
                                  "checkpoint directory")
    with pytest.raises(ZeroDivisionError), stage_errors():  # not the user's fault: unchanged
        ray.get(ray.remote(num_cpus=0)(lambda: 1 / 0).remote())


@pytest.mark.parametrize("body", [
    "method: rgvlm\nbackend:\n  type: transformers\n  model: /nonexistent/qwen2-vl\n",
    "method: clip\nmodel: /nonexistent/clip\n",
])
def test_missing_model_weights_refused_on_the_driver(body: str, valid_dataset: Path, tmp_path: Path,
                                                     capsys) -> None:
    """Before any actor would die loading them, and before anything is written."""
    from rayrg.cli import main

    out = tmp_path / "out"
    assert main(["label", "--config", _label_config(tmp_path, body), "--dataset", str(valid_dataset),
                 "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, ["/nonexistent/", "does not exist"])
    assert not list(out.glob("*.parquet"))


@pytest.mark.parametrize("bad_dataset", DRIVER_ONLY, indirect=True)
def test_train_checks_the_dataset_on_the_driver(bad_dataset, tmp_path: Path, capsys) -> None:
    """Before Ray Train starts a worker (which would report it through a WorkerGroupError)."""
    from rayrg.cli import main

    d, expected = bad_dataset
    out = tmp_path / "run"
    # The toy datasets hold frames only (no 'state' column), so they are trained on frames.
    assert main(["train", "--dataset", str(d), "--out", str(out), "--reward-column", "reward_sparse",
                 "--observation", "frame"]) == 2
    _one_line(capsys.readouterr().err, expected)
    assert not out.exists()
