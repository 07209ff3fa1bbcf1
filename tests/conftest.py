"""Shared fixtures: one local Ray cluster per test session, small datasets."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import tests.envs.toy  # noqa: F401 - registers the ``toy`` environment of the synthetic datasets
from rayrg.plugins import PLUGINS_ENV

# Ray workers and ``rayrg`` subprocesses inherit this and import the module on a miss; the repo
# root on their PYTHONPATH lets them find ``tests`` (pytest puts it on this process's path only).
os.environ[PLUGINS_ENV] = ",".join(filter(None, [os.environ.get(PLUGINS_ENV), "tests.envs.toy"]))
_ROOT = str(__import__("pathlib").Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))

# Never reach a model hub from tests; tiny checkpoints are built locally.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _vllm_tests(items)
    _required_tests(items, "browser", _has_browser(), "RAYRG_REQUIRE_BROWSER",
                    "no chromium binary (`make test` installs Debian's chromium; or apt-get install chromium)")
    _required_tests(items, "lerobot", importlib.util.find_spec("lerobot") is not None, "RAYRG_REQUIRE_LEROBOT",
                    "lerobot is not importable here: `make test` runs these tests in .venv-lerobot "
                    "(`make lerobot-venv`)")
    if _has_cuda():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (none on this machine)")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip_gpu)


def _has_browser() -> bool:
    from tests._browser import CHROMIUM

    return CHROMIUM is not None


def _required_tests(items: list[pytest.Item], marker: str, available: bool, env: str, why: str) -> None:
    """Tests that need a tool outside the main venv (`marker`): skipped with `why` where it is
    missing, unless `make test` set `env`=1; then a missing tool is an error, never a skip."""
    # By marker, not keyword: a keyword also matches a parametrize id or a test's name
    marked = [item for item in items if item.get_closest_marker(marker)]
    if not marked or available:
        return
    if os.environ.get(env) == "1":
        raise pytest.UsageError(f"{env}=1 but {why}")
    skip = pytest.mark.skip(reason=why)
    for item in marked:
        item.add_marker(skip)


def _vllm_tests(items: list[pytest.Item]) -> None:
    """vLLM pins its own torch, so `vllm`-marked tests run in a second venv (.venv-vllm,
    `make vllm-venv`); `make test` runs them there with RAYRG_REQUIRE_VLLM=1, where a missing
    vLLM is an error, never a skip. Elsewhere they are skipped with that reason."""
    marked = [item for item in items if item.get_closest_marker("vllm")]
    if not marked or importlib.util.find_spec("vllm") is not None:
        return
    if os.environ.get("RAYRG_REQUIRE_VLLM") == "1":
        raise pytest.UsageError("RAYRG_REQUIRE_VLLM=1 but vllm is not importable in this "
                                "environment: rebuild it with `make vllm-venv`")
    skip = pytest.mark.skip(reason="vLLM tests run in .venv-vllm (`make test` runs them there)")
    for item in marked:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """A real local Ray cluster (address="local", never an attached stale one), 2 CPUs."""
    import ray

    from rayrg.runtime import init_ray

    init_ray(num_cpus=2, object_store_memory=400 * 1024 * 1024)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def make_toy_dataset(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory for a small *valid* trajectory dataset with random frames (no simulator).

    Use it where a test needs the format, not BabyAI; ``babyai_dataset`` gives real data.
    """
    from rayrg.data.schema import DatasetMetadata, encode_png, write_shard

    def make(
        num_episodes: int = 4,
        steps: tuple[int, ...] = (5, 9, 12, 3),
        num_subtasks: int = 2,
        seed: int = 0,
        shards: int = 2,
        frame_size: int = 56,
    ) -> Path:
        rng = np.random.default_rng(seed)
        out = tmp_path_factory.mktemp("toy")
        rows_per_shard: list[list[dict]] = [[] for _ in range(shards)]
        total = 0
        for e in range(num_episodes):
            n = steps[e % len(steps)]
            success = e % 2 == 0
            completed = 0
            advance_at = sorted(rng.choice(np.arange(n), size=min(num_subtasks, n), replace=False))
            for t in range(n):
                if success and t in advance_at:
                    completed += 1
                if success and t == n - 1:
                    completed = num_subtasks
                frame = rng.integers(0, 255, (frame_size, frame_size, 3), dtype=np.uint8)
                action = int(rng.integers(0, 6))
                rows_per_shard[e % shards].append(
                    {
                        "episode_id": f"toy-{seed}-{e}",
                        "step": t,
                        "task_id": f"toy-task-{e}",
                        "instruction": "go to the red ball, then pick up the blue key",
                        "num_subtasks": num_subtasks,
                        "env_name": "toy",
                        "seed": seed * 1000 + e,
                        "frame": encode_png(frame),
                        "final_frame": encode_png(frame) if t == n - 1 else None,
                        "action": action,
                        "action_name": ["left", "right", "forward", "pickup", "drop", "toggle"][action],
                        "expert_action": int(rng.integers(0, 6)),
                        "is_random_action": bool(rng.random() < 0.2),
                        "terminal": success and t == n - 1,
                        "truncated": (not success) and t == n - 1,
                        "subtasks_completed": completed,
                        "success": success,
                    }
                )
                total += 1
        for i, rows in enumerate(rows_per_shard):
            if rows:
                write_shard(rows, out / f"part-{i:05d}.parquet")
        DatasetMetadata(
            generator="tests.toy", env_name="toy", num_episodes=num_episodes,
            num_transitions=total, seeds=[seed],
        ).write(out)
        return out

    return make
