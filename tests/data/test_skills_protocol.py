"""protocol=skills: single-skill episodes, their knobs, SPRINT-style relabelled chains, held-out chains.

No Ray and no training: sessions are rolled out in-process and replayed in the environment.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pyarrow.parquet as pq
import pytest

from rayrg.config import ConfigError
from rayrg.data.generate import (
    SKILL_FIELDS,
    GenerateConfig,
    generate_inputs,
    generate_shard,
    make_eval_task,
    rollout_session,
)
from rayrg.data.schema import encode_png
from rayrg.envs.babyai import chain_leaves, completed_subtasks, make_env, reset_env, step_env
from rayrg.provenance import fingerprint

NOISY = GenerateConfig(protocol="skills", noise=0.1, abandon_prob=0.5, off_target_fraction=0.3,
                       chains_per_session=3)


def _sessions(config: GenerateConfig, per_count: int = 3,
              counts: tuple[int, ...] = (1, 2, 4, 6)) -> list[tuple[int, int, list[dict[str, Any]], dict[str, Any]]]:
    out = []
    for n in counts:
        for i in range(per_count):
            seed = config.train_seed(n, i)
            rows, info = rollout_session(n, seed, config)
            out.append((n, seed, rows, info))
    return out


def _episodes(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    episodes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        episodes[row["episode_id"]].append(row)
    return episodes


@pytest.fixture(scope="module")
def noisy_sessions() -> list[tuple[int, int, list[dict[str, Any]], dict[str, Any]]]:
    return _sessions(NOISY)


def test_skill_episodes_complete_exactly_their_instruction(noisy_sessions) -> None:
    """Replay each session's skills in a fresh env: skill k's last action, and only it,
    completes sub-task k; its instruction is that sub-task's; its frames are the env's."""
    skills = 0
    for n, seed, rows, info in noisy_sessions:
        env = make_env(n, NOISY.env_config, max_steps=NOISY.max_steps,
                       off_target_kinds=tuple(NOISY.off_target_kinds),
                       off_target_fraction=NOISY.off_target_fraction)
        frame, mission = reset_env(env, seed)
        leaves = [leaf.surface(env.unwrapped) for leaf in chain_leaves(env)]
        assert ", then ".join(leaves) == mission
        for k in range(info["skills"]):
            episode = _episodes(rows)[f"babyai-chain-skill-s{seed}-k{k}"]
            assert {r["instruction"] for r in episode} == {leaves[k]}
            assert {r["num_subtasks"] for r in episode} == {1}
            for t, row in enumerate(episode):
                assert row["frame"] == encode_png(frame)
                frame, completed, _, _ = step_env(env, row["action"])
                expected = k + 1 if t == len(episode) - 1 else k
                # A cut session: its last kept skill's last step also completed the next sub-task.
                cut = info["cut"] and k == info["skills"] - 1 and t == len(episode) - 1
                assert completed == expected + int(cut), (seed, k, t)
                assert row["subtasks_completed"] == expected - k
            assert episode[-1]["terminal"] and episode[-1]["success"] and episode[-1]["final_frame"] == encode_png(frame)
            skills += 1
        assert completed_subtasks(env) == info["skills"] + int(info["cut"])
        env.close()
    assert skills >= 20


def test_relabelled_chains_are_consecutive_skills(noisy_sessions) -> None:
    chains = 0
    for _, seed, rows, info in noisy_sessions:
        episodes = _episodes(rows)
        assert len(info["chains"]) == min(3, info["skills"] * (info["skills"] - 1) // 2)
        if info["skills"] >= 2:
            assert info["chains"][0] == (0, info["skills"] - 1)  # the whole session first
        for first, last in info["chains"]:
            chain = episodes[f"babyai-chain-relabel-s{seed}-k{first}-{last}"]
            skills = [episodes[f"babyai-chain-skill-s{seed}-k{k}"] for k in range(first, last + 1)]
            joined = [r for skill in skills for r in skill]
            assert [r["frame"] for r in chain] == [r["frame"] for r in joined]
            for key in ("action", "expert_action", "is_random_action", "state"):
                assert [r[key] for r in chain] == [r[key] for r in joined]
            assert {r["instruction"] for r in chain} == {", then ".join(s[0]["instruction"] for s in skills)}
            assert {r["num_subtasks"] for r in chain} == {last - first + 1}
            assert [r["subtasks_completed"] for r in chain] == [
                q + r["subtasks_completed"] for q, skill in enumerate(skills) for r in skill]
            assert [r["step"] for r in chain] == list(range(len(chain)))
            assert [r["terminal"] for r in chain] == [False] * (len(chain) - 1) + [True]
            assert chain[-1]["final_frame"] == skills[-1][-1]["final_frame"]
            assert all(r["final_frame"] is None for r in chain[:-1])
            chains += 1
    assert chains >= 10


def test_whole_session_chain_is_the_mission() -> None:
    """The relabelled instruction of an uncut session is the instruction BabyAI gives the chain."""
    config = GenerateConfig(protocol="skills", noise=0.0, chains_per_session=1)
    checked = 0
    for n, seed, rows, info in _sessions(config, per_count=2, counts=(3, 5)):
        if info["skills"] == n:
            env = make_env(n, config.env_config, off_target_kinds=tuple(config.off_target_kinds))
            _, mission = reset_env(env, seed)
            assert {r["instruction"] for r in _episodes(rows)[f"babyai-chain-relabel-s{seed}-k0-{n - 1}"]} == {mission}
            checked += 1
    assert checked >= 2


def test_off_target_fraction_counts() -> None:
    def kinds(fraction: float) -> list[str]:
        config = GenerateConfig(protocol="skills", off_target_fraction=fraction, noise=0.0, chains_per_session=0)
        return [k for n in (4, 6) for i in range(5) for k in rollout_session(n, config.train_seed(n, i), config)[1]["kinds"]]

    assert "putnext" not in kinds(0.0)
    assert set(kinds(1.0)) == {"putnext"}
    half = kinds(0.5)
    assert 0.3 <= half.count("putnext") / len(half) <= 0.7, half  # 50 sub-tasks
    # Evaluation chains never ask for the off-target kind.
    for i in range(6):
        task = make_eval_task(NOISY, 6, i)
        assert task is not None and "put " not in task.instruction
        assert task.extra["env_config"]["action_kinds"] == ("goto", "pickup", "open")


def test_noise_and_abandon_counts() -> None:
    def run(**knobs: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        config = GenerateConfig(protocol="skills", chains_per_session=0, **knobs)
        sessions = _sessions(config, per_count=3, counts=(2, 4))
        return [r for *_, rows, _ in sessions for r in rows], [info for *_, info in sessions]

    rows, infos = run(noise=0.0)
    assert all(r["action"] == r["expert_action"] and not r["is_random_action"] for r in rows)
    assert all(a == 0 for info in infos for a in info["abandoned"])

    rows, infos = run(noise=0.3)
    share = sum(r["is_random_action"] for r in rows) / len(rows)
    assert 0.2 <= share <= 0.4, share
    assert all(a == 0 for info in infos for a in info["abandoned"])

    rows, infos = run(noise=0.0, abandon_prob=1.0, abandon_max_steps=6)
    abandoned = [a for info in infos for a in info["abandoned"]]
    assert sum(a > 0 for a in abandoned) >= 0.8 * len(abandoned)
    assert max(abandoned) <= 6
    off_expert = sum(r["action"] != r["expert_action"] for r in rows)
    assert not any(r["is_random_action"] for r in rows)
    assert 0 < off_expert <= sum(abandoned)  # only abandoned steps leave the expert's plan

    rows, infos = run(noise=0.0, detour_prob=0.1, detour_max_steps=3)
    detoured = [d for info in infos for d in info["detoured"]]
    assert all(a == 0 for info in infos for a in info["abandoned"])
    assert sum(d > 0 for d in detoured) >= 2 and max(detoured) > 1
    off_expert = sum(r["action"] != r["expert_action"] for r in rows)
    assert 0 < off_expert <= sum(detoured)  # only detour steps leave the expert's plan
    # Every skill still completes its own instruction, after its detours.
    assert all(info["skills"] == len(info["detoured"]) for info in infos)


def test_detours_off_keep_the_data_and_the_fingerprint_of_before() -> None:
    from rayrg.data.generate import DETOUR_FIELDS, generate_inputs

    base = GenerateConfig(protocol="skills", noise=0.1, abandon_prob=0.5)
    settings = generate_inputs(base)["config"]
    assert not set(DETOUR_FIELDS) & set(settings)  # as the fingerprint was before detours existed
    assert set(DETOUR_FIELDS) <= set(generate_inputs(base.model_copy(update={"detour_prob": 0.1}))["config"])
    # No random number is drawn for detours that are off: the episodes are unchanged.
    seed = base.train_seed(3, 0)
    again = GenerateConfig(protocol="skills", noise=0.1, abandon_prob=0.5, detour_max_steps=9)
    assert rollout_session(3, seed, base)[0] == rollout_session(3, seed, again)[0]


def test_no_evaluation_task_leaks_into_training(tmp_path) -> None:
    config = GenerateConfig(protocol="skills", subtask_counts=[1, 3, 6], episodes_per_count=2,
                            eval_tasks_per_count=3, val_tasks_per_count=3, abandon_prob=0.3,
                            off_target_fraction=0.3)
    jobs = [(n, config.train_seed(n, i)) for n in config.subtask_counts for i in range(config.episodes_per_count)]
    stats = generate_shard(jobs, config.to_dict(), str(tmp_path / "part-00000.parquet"))
    train = pq.read_table(tmp_path / "part-00000.parquet", columns=["seed", "task_id", "instruction"]).to_pylist()
    assert stats["skill_episodes"] > 0 and stats["chain_episodes"] > 0 and stats["sessions"] == len(jobs)
    assert stats["episodes"] == len({r["task_id"] for r in train})
    held_out = [make_eval_task(config, n, i, split) for split in ("test", "validation")
                for n in config.subtask_counts for i in range(3)]
    held_out = [t for t in held_out if t is not None]
    assert {t.seed for t in held_out}.isdisjoint({r["seed"] for r in train})
    assert {t.task_id for t in held_out}.isdisjoint({r["task_id"] for r in train})
    assert {(t.seed, t.instruction) for t in held_out}.isdisjoint({(r["seed"], r["instruction"]) for r in train})


def test_fingerprint_changes_with_each_knob() -> None:
    missions = GenerateConfig()
    # The default protocol keeps the fingerprint datasets had before the skills protocol existed.
    assert not set(generate_inputs(missions)["config"]) & {*SKILL_FIELDS, "protocol"}
    base = GenerateConfig(protocol="skills")
    seen = {fingerprint(generate_inputs(missions)), fingerprint(generate_inputs(base))}
    for knob, value in [("off_target_fraction", 0.2), ("off_target_kinds", ["open"]), ("abandon_prob", 0.3),
                        ("abandon_max_steps", 3), ("chains_per_session", 2), ("noise", 0.4)]:
        seen.add(fingerprint(generate_inputs(base.model_copy(update={knob: value}))))
    assert len(seen) == 8
    assert set(SKILL_FIELDS) <= set(GenerateConfig.model_fields)


def test_skill_knobs_refused_under_missions() -> None:
    with pytest.raises(ConfigError, match="abandon_prob apply only with protocol: skills"):
        GenerateConfig.from_dict({"abandon_prob": 0.3})
    with pytest.raises(ConfigError, match="no kind for the evaluation targets"):
        GenerateConfig.from_dict({"protocol": "skills", "off_target_kinds": ["goto", "pickup", "open", "putnext"]})


def test_the_plan_counts_skill_episodes_and_chains_not_sessions(noisy_sessions) -> None:
    from rayrg.experiments.config import ExperimentConfig
    from rayrg.experiments.preflight import plan

    generate = {**NOISY.to_dict(), "subtask_counts": [1, 2, 4, 6], "episodes_per_count": 3}
    text = plan(ExperimentConfig.from_dict({"data": {"source": "babyai", "generate": generate}}))
    # 3 sessions per count: skills 3 x (1+2+4+6) = 39; chains 3 x (0+1+3+3) = 21 (3 per session at most)
    assert "12 sessions" in text and "≤ 39 skill episodes + ≤ 21 relabelled chains" in text, text
    assert "60 episodes" in text  # the windows estimate counts both
    made = [(n, len(_episodes(rows))) for n, _, rows, _ in noisy_sessions]
    assert len(made) == 12 and sum(e for _, e in made) <= 60
    # An uncut session makes exactly its bound: k skills + min(3, k(k-1)/2) chains.
    assert any(e == n + min(3, n * (n - 1) // 2) for n, e in made if n > 1)
