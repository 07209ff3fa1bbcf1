"""Minari import/export against a Minari dataset rolled out locally from BabyAI."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import io
import json
import re
import shutil
import string
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

minari = pytest.importorskip("minari")

from rayrg.config import ConfigError  # noqa: E402
from rayrg.data.access import MISSING_TRUTH_KEY, Dataset  # noqa: E402
from rayrg.data.minari import (  # noqa: E402
    MINARI,
    SOURCE_REWARD_COLUMN,
    MinariExportConfig,
    MinariImportConfig,
    episode_key,
)
from rayrg.data.schema import DatasetError, decode_png  # noqa: E402
from rayrg.envs.babyai import ACTION_NAMES, make_bot, make_env  # noqa: E402
from rayrg.rewards.registry import get_method, run_label  # noqa: E402

SOURCE_ID = "rayrg/babyai-v0"
MIXED_ID = "rayrg/babyai-mixed-v0"
# MiniGrid's 7 actions: rayrg's six plus the bot's "done".
MINIGRID_ACTIONS = [*ACTION_NAMES, "done"]
SEEDS = (12, 14, 13, 11)


def rollout(seed: int, max_steps: int, noise: float) -> dict[str, Any]:
    """One ε-noisy BabyAI bot episode, every observation (final one included) and step."""
    env = make_env(1, max_steps=max_steps)
    with contextlib.redirect_stdout(io.StringIO()):  # level generation prints
        obs, _ = env.reset(seed=seed)
    bot = make_bot(env)
    rng = np.random.default_rng(seed)
    ep: dict[str, Any] = {"image": [obs["image"]], "direction": [obs["direction"]], "mission": [obs["mission"]],
                          "actions": [], "rewards": [], "terminations": [], "truncations": []}
    prev = None
    for _ in range(max_steps):
        try:
            action = int(bot.replan(prev))
        except Exception:  # the bot gets lost after some random actions: act randomly
            action = int(rng.integers(3))
        if rng.random() < noise:
            action = int(rng.integers(3))
        obs, reward, terminated, truncated, _ = env.step(action)
        for key in ("image", "direction", "mission"):
            ep[key].append(obs[key])
        ep["actions"].append(action)
        ep["rewards"].append(reward)
        ep["terminations"].append(terminated)
        ep["truncations"].append(truncated)
        prev = action
        if terminated or truncated:
            break
    env.close()
    return ep


def observation_space(image_shape: tuple[int, ...]) -> Any:
    import gymnasium as gym

    # MiniGrid's MissionSpace cannot be serialised into Minari metadata: a Text space can.
    charset = string.ascii_letters + string.digits + " ,.'-"
    return gym.spaces.Dict({
        "image": gym.spaces.Box(0, 255, image_shape, np.uint8),
        "direction": gym.spaces.Discrete(4),
        "mission": gym.spaces.Text(max_length=256, charset=charset),
    })


def write_store(root: Path) -> dict[str, Any]:
    """A Minari store at ``root`` holding the BabyAI rollouts (as :data:`SOURCE_ID`) and the same
    episodes with their raw reward dtypes (as :data:`MIXED_ID`); also used by other test modules."""
    import gymnasium as gym
    from minari.data_collector import EpisodeBuffer

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        # Two clean bot episodes (successes), a noisy one, one cut at 6 steps (truncated).
        episodes = [rollout(s, max_steps, noise)
                    for s, max_steps, noise in zip(SEEDS, (64, 64, 64, 6), (0.0, 0.0, 0.3, 0.0), strict=True)]
        # DataCollector.step() needs jax (minari[create]); EpisodeBuffers built directly do not.
        buffers = [EpisodeBuffer(id=i, seed=s, observations={k: ep[k] for k in ("image", "direction", "mission")},
                                 actions=ep["actions"], rewards=np.asarray(ep["rewards"], np.float64), terminations=ep["terminations"],
                                 truncations=ep["truncations"])
                   for i, (s, ep) in enumerate(zip(SEEDS, episodes, strict=True))]
        # Minari warns about every unset descriptive field (author, permalink, ...).
        mp.setattr("warnings.warn", lambda *args, **kwargs: None)
        spaces = {"observation_space": observation_space(episodes[0]["image"][0].shape),
                  "action_space": gym.spaces.Discrete(7)}
        minari.create_dataset_from_buffers(
            SOURCE_ID, buffers, env=None, data_format="arrow", **spaces,
            jpeg_encoding=False)  # JPEG is lossy: frames must survive bit for bit
        # The same episodes with the rewards as the env returned them: Minari keeps each
        # episode's dtype, so the truncated episode (all Python int 0) stores int64.
        raw = [dataclasses.replace(b, rewards=list(ep["rewards"])) for b, ep in zip(buffers, episodes, strict=True)]
        minari.create_dataset_from_buffers(MIXED_ID, raw, env=None, data_format="arrow", **spaces,
                                           jpeg_encoding=False)
    return {"root": root, "source": root / SOURCE_ID, "episodes": episodes}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("minari_store")
    with pytest.MonkeyPatch.context() as mp:
        written = write_store(root)
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        mp.setattr("warnings.warn", lambda *args, **kwargs: None)  # Minari's unset descriptive fields
        yield written


@pytest.fixture(scope="module")
def imported(store: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("imported") / "trajectories"
    return MINARI.import_(store["source"], out, MinariImportConfig(action_names=MINIGRID_ACTIONS)).trajectories


def test_rollout_covers_success_and_truncation(store: dict[str, Any]) -> None:
    last = [(ep["terminations"][-1], ep["truncations"][-1], ep["rewards"][-1]) for ep in store["episodes"]]
    assert any(term and reward > 0 for term, _, reward in last)
    assert last[-1][1] and not last[-1][0]


def test_import_matches_rollout(store: dict[str, Any], imported: Path) -> None:
    data = Dataset.open(imported)
    table = data.read(decode_images=True)
    episodes = store["episodes"]
    assert table.num_rows == sum(len(ep["actions"]) for ep in episodes)
    assert data.metadata.num_episodes == len(episodes)
    start = 0
    for i, ep in enumerate(episodes):
        n = len(ep["actions"])
        rows = table.slice(start, n).to_pylist()
        start += n
        assert [r["episode_id"] for r in rows] == [episode_key(i)] * n
        assert [r["step"] for r in rows] == list(range(n))
        assert [r["instruction"] for r in rows] == ep["mission"][:n]
        assert [r["action"] for r in rows] == ep["actions"]
        assert [r["action_name"] for r in rows] == [MINIGRID_ACTIONS[a] for a in ep["actions"]]
        assert [r["terminal"] for r in rows] == ep["terminations"]
        assert [r["truncated"] for r in rows] == ep["truncations"]
        assert {r["seed"] for r in rows} == {SEEDS[i]}
        for t, r in enumerate(rows):
            assert np.array_equal(decode_png(r["frame"]), ep["image"][t])
        assert np.array_equal(decode_png(rows[-1]["final_frame"]), ep["image"][n])
        assert all(r["final_frame"] is None for r in rows[:-1])
        expected_success = bool(ep["terminations"][-1] and ep["rewards"][-1] > 0)
        assert {r["success"] for r in rows} == {expected_success}
        np.testing.assert_array_equal([r[SOURCE_REWARD_COLUMN] for r in rows],
                                      np.asarray(ep["rewards"], dtype=np.float32))
        # Nothing rayrg lacks is invented: the unknown values, and the reason in the metadata.
        assert {r["expert_action"] for r in rows} == {-1}
        assert {r["subtasks_completed"] for r in rows} == {0}


def test_import_records_what_the_dataset_lacks(store: dict[str, Any], imported: Path) -> None:
    extra = Dataset.open(imported).metadata.extra
    assert {"expert_action", "subtasks"} <= set(extra[MISSING_TRUTH_KEY])
    assert Path(extra["minari"]["root"]) == store["source"].resolve()
    assert extra["minari"]["dataset_id"] == SOURCE_ID


def test_import_by_id_through_the_store(store: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store["root"]))
    out = MINARI.import_(SOURCE_ID, tmp_path / "by_id", MinariImportConfig(action_names=MINIGRID_ACTIONS)).trajectories
    assert Dataset.open(out).metadata.num_transitions == sum(len(ep["actions"]) for ep in store["episodes"])


def test_import_reads_episodes_of_mixed_reward_dtypes(store: dict[str, Any], tmp_path: Path) -> None:
    dtypes = {t.schema.field("rewards").type for t in _episode_tables(store["root"] / MIXED_ID).values()}
    assert dtypes == {pa.float64(), pa.int64()}
    out = MINARI.import_(store["root"] / MIXED_ID, tmp_path / "mixed").trajectories
    table = Dataset.open(out).read(["action_name", SOURCE_REWARD_COLUMN])
    rewards = np.concatenate([np.asarray(ep["rewards"], np.float32) for ep in store["episodes"]])
    np.testing.assert_array_equal(table.column(SOURCE_REWARD_COLUMN).to_numpy(), rewards)
    assert set(table.column("action_name").to_pylist()) <= {f"action {a}" for a in range(7)}


def test_import_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a local Minari dataset") as err:
        MINARI.import_(tmp_path / "nothing", tmp_path / "out")
    assert "\n" not in str(err.value)


def _episode_tables(root: Path) -> dict[int, pa.Table]:
    tables = {}
    for path in sorted((root / "data").glob("*/part-0.arrow")):
        with pa.memory_map(str(path)) as source:
            tables[int(path.parent.name)] = pa.ipc.open_file(source).read_all()
    return tables


def test_export_relabels_only_rewards(store: dict[str, Any], imported: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    method = get_method("sparse")
    labelled = run_label(method, method.config_cls(), imported, tmp_path / "labelled")
    export_id = "rayrg/babyai-sparse-v0"
    out = MINARI.export(labelled, store["root"] / export_id, "reward_sparse", MinariExportConfig(dataset_id=export_id))
    column = Dataset.open(labelled).read(["episode_id", "reward_sparse"])
    assert column.column("reward_sparse").type == pa.float32()

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store["root"]))
    exported = minari.load_dataset(export_id)
    assert exported.total_episodes == len(store["episodes"])
    start = 0
    for episode in exported.iterate_episodes():
        n = len(episode.rewards)
        expected = np.asarray(column.column("reward_sparse").to_numpy()[start:start + n])
        start += n
        assert episode.rewards.dtype == np.float32
        np.testing.assert_array_equal(episode.rewards, expected)
        assert episode.rewards[-1] == float(store["episodes"][int(episode.id)]["rewards"][-1] > 0)
    assert start == column.num_rows

    source, copy = _episode_tables(store["source"]), _episode_tables(out)
    assert sorted(source) == sorted(copy)
    changed = 0
    for index, table in source.items():
        assert copy[index].column_names == table.column_names
        for name in table.column_names:
            if name != "rewards":
                assert copy[index].column(name).equals(table.column(name)), (index, name)
        changed += not np.array_equal(copy[index].column("rewards").to_numpy()[:-1],
                                      table.column("rewards").to_numpy()[:-1].astype(np.float32))
    # BabyAI's reward shrinks with the steps taken; sparse is exactly 1: the rewards did change.
    assert changed >= 1
    # Images bit-identical, as Minari decodes them.
    original = minari.load_dataset(SOURCE_ID)
    for a, b in zip(original.iterate_episodes(), exported.iterate_episodes(), strict=True):
        assert np.array_equal(a.observations["image"], b.observations["image"])
        assert a.observations["mission"] == b.observations["mission"]


@pytest.mark.integration
def test_rgvlm_labels_from_the_loopback_server_reach_minari(store: dict[str, Any], imported: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch, ray_local) -> None:
    """Imported → RG-VLM through a real HTTP server on Ray Data → exported → read by minari."""
    from rayrg.rewards.rgvlm.loopback import LoopbackServer

    method = get_method("rgvlm")
    with LoopbackServer() as server:
        config = method.config_cls.from_dict({"method": "rgvlm", "backend": {
            "type": "openai", "base_url": server.base_url, "model": "loopback-vlm", "backoff_initial_s": 0.01}})
        labelled = run_label(method, config, imported, tmp_path / "rgvlm")
        windows = sum(-(-len(ep["actions"]) // 8) for ep in store["episodes"])  # window 8, stride 8
        assert server.stats.requests == 2 * windows
    column = Dataset.open(labelled).read(["episode_id", "reward_rgvlm"]).column("reward_rgvlm").to_numpy()
    assert not np.isnan(column).any()
    export_id = "rayrg/babyai-rgvlm-v0"
    MINARI.export(labelled, store["root"] / export_id, "reward_rgvlm", MinariExportConfig(dataset_id=export_id))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store["root"]))
    rewards = np.concatenate([ep.rewards for ep in minari.load_dataset(export_id).iterate_episodes()])
    np.testing.assert_array_equal(rewards, column.astype(np.float32))


def test_export_needs_a_minari_import(imported: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(imported, plain)
    (plain / "_provenance.json").unlink()
    meta = json.loads((plain / "metadata.json").read_text())
    del meta["extra"]["minari"]
    (plain / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="not imported from Minari") as err:
        MINARI.export(plain, tmp_path / "out", SOURCE_REWARD_COLUMN)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"'reward_nope' is not a reward column .* has \['reward_minari'\]"):
        MINARI.export(imported, tmp_path / "out2", "reward_nope")


def test_module_imports_minari_lazily() -> None:
    # The import/export registry imports this module for its name: that must work without
    # the optional dependency installed, so minari is imported only when a method runs.
    code = "import sys, rayrg.data.minari as m; assert m.MINARI.name == 'minari'; assert 'minari' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def _cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rayrg.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_export_records_where_its_rewards_came_from(store: dict[str, Any], imported: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy's own metadata says which column, labeller and model made its rewards, whether
    that model was a tiny random checkpoint, and the copy gets its own dataset id."""
    import os

    from rayrg.data.export_meta import EXPORT_KEY

    method = get_method("sparse")
    labelled = run_label(method, method.config_cls(), imported, tmp_path / "labelled")
    # The labeller's recorded model is a tiny random checkpoint (its marker file decides).
    tiny = tmp_path / "tiny-vlm"
    tiny.mkdir()
    (tiny / "rayrg_tiny.json").write_text("{}")
    meta = json.loads((labelled / "metadata.json").read_text())
    meta["extra"]["labels"]["reward_sparse"].update(model=str(tiny), api_key="sk-should-never-travel")
    (labelled / "metadata.json").write_text(json.dumps(meta))

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "MINARI_DATASETS_PATH": str(store["root"])}
    # A column that is not there: refused in one line that lists the columns present.
    bad = _cli("export", "minari", str(labelled), "--out", "nope", "--reward", "reward_rgvlm_sparse",
               cwd=tmp_path, env=env)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "reward_rgvlm_sparse" in bad.stderr and "'reward_sparse'" in bad.stderr
    assert "'reward_minari'" in bad.stderr and not (tmp_path / "nope").exists()

    # A relative --out: the output names the exact argument minari.load_dataset takes.
    done = _cli("export", "minari", str(labelled), "--out", "exports/sparse", "--reward", "sparse",
                cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("minari dataset: ")][-1]
    argument = ast.literal_eval(re.search(r"minari\.load_dataset\((.+)\)\)$", line).group(1))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(store["root"]))
    exported = minari.load_dataset(argument)
    assert exported.total_episodes == len(store["episodes"])
    assert exported.spec.dataset_id == "rayrg/babyai-sparse-v0" != SOURCE_ID

    record = json.loads((tmp_path / "exports/sparse/data/metadata.json").read_text())[EXPORT_KEY]
    assert record["reward_column"] == "reward_sparse" and record["source_dataset_id"] == SOURCE_ID
    assert record["method"] == "sparse" and record["labeller"]["method"] == "sparse"
    assert record["model"] == {"model": str(tiny)}
    assert record["pipeline_check"] is True and "PIPELINE CHECK" in record["caveat"]
    assert "sk-should-never-travel" not in json.dumps(record)
    # The source's metadata is untouched.
    assert EXPORT_KEY not in json.loads((store["source"] / "data" / "metadata.json").read_text())
