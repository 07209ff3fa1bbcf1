"""Labelling and training with their outputs on S3 (a local moto server) against a local disk.

One dataset is generated once on the local disk (not timed) and copied into a bucket of a
moto S3 server on 127.0.0.1. Each arm then runs the same ``rayrg`` commands, reading its input
from and writing its outputs to its own storage (as a cluster job reads and writes the bucket):

* labelling: ``rayrg label`` sparse, then simulated (accuracy 0.9) on the sparse output;
* training: ``rayrg train`` of a few hundred IQL updates on the labelled dataset.

Each command is its own process starting its own local Ray cluster (≈ 5 s, the same in both
arms), timed over its wall time; arms alternate (local, S3, local, S3 …) and each figure is the
median over ``--repeats``. moto is a Python server sharing this machine's cores, so the S3 time
is split: the moto process's own CPU time during the arm (psutil, before/after) is the server's
cost; what remains of the S3-minus-local difference is rayrg's (pyarrow's S3 client, Ray Data's
object-store writes, Ray Train's checkpoint uploads). A second reference: raw pyarrow GETs and
PUTs (``pyarrow.fs.copy_files``, no rayrg, no Ray) of the very objects each stage read and
wrote in the S3 arm, to moto and, for the same bytes, local disk to local disk: the least any
S3 client pays this server to move them. Prints

  ``labelling on S3 (moto) vs local disk: R``
  ``training on S3 (moto) vs local disk: R``

(R = S3 time / local time; no goal: the server is a stand-in, see above) with the split.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.storage._moto import _create_bucket, s3_env, start_moto, stop_moto  # noqa: E402

BUCKET = "rayrg-bench"


def _run(args: list[str], env: dict[str, str], cwd: Path, what: str) -> float:
    """Wall time of one ``rayrg`` command; a failure ends the benchmark naming the arm."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "rayrg.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise SystemExit(f"bench_storage: {what} failed (exit {done.returncode}): rayrg {' '.join(args)}\n{tail}")
    return elapsed


def _cpu(pid: int) -> float:
    import psutil

    proc = psutil.Process(pid)
    times = proc.cpu_times()
    total = times.user + times.system
    for child in proc.children(recursive=True):  # werkzeug may reload into a child
        try:
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
        except psutil.NoSuchProcess:
            pass
    return total


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """``env`` set in this process for the block (the S3 endpoint and keys), then restored."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _upload(local: Path, uri: str, env: dict[str, str]) -> None:
    """Copy a local dataset folder into the bucket (pyarrow, as rayrg reaches S3)."""
    import pyarrow.fs as pafs

    with _environment(env):
        from rayrg.storage import resolve

        target = resolve(uri)
        pafs.copy_files(str(local), target.path, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=target.fs)


def _raw_transfer(uris: list[str], scratch: Path, env: dict[str, str]) -> tuple[float, float, int, int]:
    """(S3 s, local-disk s, bytes, files) of raw pyarrow GET then PUT of every object under
    ``uris``: each folder copied from the bucket to local disk and back to a scratch prefix; the
    local reference copies the same files disk to disk."""
    import shutil

    import pyarrow.fs as pafs

    with _environment(env):
        from rayrg.storage import resolve

        s3_time = local_time = 0.0
        size = files = 0
        for i, uri in enumerate(uris):
            source = resolve(uri)
            got, copied = scratch / f"get{i}", scratch / f"copy{i}"
            put = resolve(f"s3://{BUCKET}/raw-{scratch.name}-{i}")
            start = time.perf_counter()
            base = source.path.rstrip("/") + "/"
            infos = source.fs.get_file_info(pafs.FileSelector(source.path, recursive=True))
            for info in infos:  # one GET per object, then one PUT of it
                if info.type != pafs.FileType.File:
                    continue
                rel = info.path[len(base):]
                with source.fs.open_input_stream(info.path) as stream:
                    data = stream.read()
                (got / rel).parent.mkdir(parents=True, exist_ok=True)
                (got / rel).write_bytes(data)
                with put.fs.open_output_stream(f"{put.path}/{rel}") as stream:
                    stream.write(data)
            s3_time += time.perf_counter() - start
            start = time.perf_counter()
            shutil.copytree(got, copied)  # the same bytes, read from and written to local disk
            local_time += time.perf_counter() - start
            found = [p for p in got.rglob("*") if p.is_file()]
            size += sum(p.stat().st_size for p in found)
            files += len(found)
        return s3_time, local_time, size, files


def _arm(root: str, data: str, tmp: Path, env: dict[str, str], server_pid: int) -> tuple[float, float, float, float]:
    """(labelling s, training s, moto CPU s while labelling, while training) of one arm whose
    storage is ``root`` (the moto CPU counts only what the server did, whichever arm)."""
    sparse, labelled, train = f"{root}/sparse", f"{root}/labelled", f"{root}/iql"
    cpu0 = _cpu(server_pid)
    label = _run(["label", "--config", str(REPO / "jobs" / "label_sparse.yaml"), "--dataset", data,
                  "--out", sparse, "--overwrite"], env, tmp, f"labelling (sparse) on {root}")
    label += _run(["label", "--config", str(tmp / "simulated.yaml"), "--dataset", sparse,
                   "--out", labelled, "--overwrite"], env, tmp, f"labelling (simulated) on {root}")
    cpu1 = _cpu(server_pid)
    training = _run(["train", "--config", str(tmp / "iql.yaml"), "--dataset", labelled,
                     "--out", train, "--overwrite"], env, tmp, f"training on {root}")
    return label, training, cpu1 - cpu0, _cpu(server_pid) - cpu1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes-per-count", type=int, default=6)
    parser.add_argument("--steps", type=int, default=300, help="IQL updates per training run")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each arm (median reported)")
    args = parser.parse_args()

    server = start_moto()
    pid = server.process.pid
    env = {**os.environ, **s3_env(server.endpoint), "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    for name in ("RAYRG_STORAGE", "RAY_ADDRESS", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        env.pop(name, None)
    try:
        _create_bucket(server.endpoint, BUCKET, s3_env(server.endpoint))
        with tempfile.TemporaryDirectory(prefix="bench-storage-") as name:
            tmp = Path(name)
            (tmp / "simulated.yaml").write_text("method: simulated\naccuracy: 0.9\nname: acc900\n")
            (tmp / "iql.yaml").write_text(
                f"reward_column: reward_simulated_acc900_sparse\nnum_steps: {args.steps}\nbatch_size: 64\n"
                f"checkpoint_every: {max(1, args.steps // 3)}\nreport_every: {max(1, args.steps // 3)}\n")
            local_data = tmp / "data"
            _run(["generate", "--out", str(local_data), "--episodes-per-count", str(args.episodes_per_count),
                  "--eval-tasks-per-count", "1"], env, tmp, "generating the dataset")
            s3_data = f"s3://{BUCKET}/data/trajectories"
            _upload(local_data / "trajectories", s3_data, s3_env(server.endpoint))

            local, s3 = [], []
            raw: tuple[list, list] = ([], [])
            for n in range(args.repeats):  # alternate, so drift in the machine's load hits both arms
                local.append(_arm(str(tmp / f"local{n}"), str(local_data / "trajectories"), tmp, env, pid))
                run = f"s3://{BUCKET}/run{n}"
                s3.append(_arm(run, s3_data, tmp, env, pid))
                # what each stage read and wrote in the bucket, moved again by raw pyarrow
                for i, uris in enumerate(([s3_data, f"{run}/sparse", f"{run}/labelled"],
                                          [f"{run}/labelled", f"{run}/iql"])):
                    scratch = tmp / f"raw{n}-{i}"
                    scratch.mkdir()
                    raw[i].append(_raw_transfer(uris, scratch, s3_env(server.endpoint)))
    finally:
        stop_moto(server)

    print(f"{args.repeats} run(s) per arm; {args.episodes_per_count} episodes per sub-task count; "
          f"{args.steps} IQL updates; this machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    for i, what in enumerate(("labelling", "training")):
        t_local = statistics.median(r[i] for r in local)
        t_s3 = statistics.median(r[i] for r in s3)
        server_cpu = statistics.median(r[2 + i] for r in s3)
        extra = t_s3 - t_local
        print(f"{what} on S3 (moto) vs local disk: {t_s3 / t_local:.2f}x  ({t_s3:.1f} s vs {t_local:.1f} s)")
        raw_s3 = statistics.median(r[0] for r in raw[i])
        raw_local = statistics.median(r[1] for r in raw[i])
        size, files = raw[i][0][2], raw[i][0][3]
        print(f"  S3 extra {extra:+.1f} s: moto server CPU {server_cpu:.1f} s "
              f"({server_cpu / t_s3:.0%} of the S3 time), rayrg's side (client, uploads) {extra - server_cpu:+.1f} s")
        print(f"  reference, raw pyarrow GET+PUT of the stage's {files} objects ({size / 1e6:.1f} MB) to moto: "
              f"{raw_s3:.2f} s vs {raw_local:.2f} s disk to disk ({raw_s3 / max(raw_local, 1e-3):.0f}x); "
              f"of the S3 extra, {extra - (raw_s3 - raw_local):+.1f} s is above that transfer floor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
