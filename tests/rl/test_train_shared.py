"""Training that shares a machine: two ``rayrg`` commands at once, and workers that ask Ray
for the CPUs their threads use (issue 29)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rayrg.config import ConfigError
from rayrg.experiments.sweep import SweepConfig
from rayrg.rl.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
# Ray's own warning when a call to its autoscaling coordinator times out on an overloaded
# machine (it logs the traceback and carries on): load from other processes, not a rayrg fault.
RAY_OVERLOAD_NOTE = "CPU being overloaded, it's safe to ignore"


def _tracebacks(console: str) -> list[str]:
    """The tracebacks in a console, each with the line before it; Ray's overload note excepted."""
    lines = console.splitlines()
    found = []
    for i, line in enumerate(lines):
        if line.startswith("Traceback") and not (i and RAY_OVERLOAD_NOTE in lines[i - 1]):
            found.append("\n".join(lines[max(0, i - 1):i + 30]))
    return found


def test_worker_cpus_follow_the_threads_they_run() -> None:
    assert TrainConfig().worker_cpus() == 0.5  # fractional default: 1 thread, never a deadlock
    assert TrainConfig(torch_threads=2).worker_cpus() == 2.0
    assert TrainConfig(torch_threads=1, cpus_per_worker=1.5).worker_cpus() == 1.5
    sweep = SweepConfig(train=TrainConfig(torch_threads=2), trial_cpus=0.25)
    assert sweep.trial_cpus_total() == 0.25 + 2.0 + sweep.eval.num_actors * sweep.eval.cpus_per_actor


def test_workers_pin_the_address_and_set_threads_from_their_grant(ray_local: None) -> None:
    import ray

    from rayrg.rl.train import check_fits, use_granted_cpus

    gcs = ray.get_runtime_context().gcs_address
    assert os.environ["RAY_ADDRESS"] == gcs  # the driver's State API calls find this cluster

    @ray.remote
    def probe() -> tuple[str | None, str | None, int, int]:
        import torch

        threads = use_granted_cpus()
        return os.environ.get("RAY_ADDRESS"), os.environ.get("OMP_WAIT_POLICY"), threads, torch.get_num_threads()

    address, policy, threads, torch_threads = ray.get(probe.options(num_cpus=0.5).remote())
    assert address == gcs and policy == "PASSIVE"
    assert threads == torch_threads == 1  # a fractional grant runs one thread
    assert ray.get(probe.options(num_cpus=2).remote())[2:] == (2, 2)
    with pytest.raises(ConfigError, match=r"1 worker\(s\) × 3 CPUs .* the cluster has 2"):
        check_fits(TrainConfig(torch_threads=3))


@pytest.mark.slow
@pytest.mark.integration
def test_two_commands_at_once_each_run_cleanly_on_their_own_cluster(tiny_babyai: Path, tmp_path: Path) -> None:
    """Each command starts its own local cluster; before, Ray Train's placement-group cleaner
    (a detached actor polling the State API with no address) died with "Found multiple active
    Ray instances" in both, printing a traceback."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("RAY_ADDRESS", None)
    procs = [subprocess.Popen(
        [sys.executable, "-m", "rayrg.cli", "train", "--dataset", str(tiny_babyai), "--out", str(tmp_path / f"o{i}"),
         "--reward-column", "reward_sparse", "--num-steps", "200"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env) for i in range(2)]
    consoles = [p.communicate(timeout=600)[0] for p in procs]
    for i, (proc, console) in enumerate(zip(procs, consoles, strict=True)):
        assert proc.returncode == 0, console[-3000:]
        assert "multiple active Ray instances" not in console, console[-3000:]
        assert not _tracebacks(console), _tracebacks(console)[0]
        assert "[rayrg] train: step 200/200" in console
        assert f"final checkpoint: {tmp_path / f'o{i}' / 'final'}" in console  # its own run, not the other's
