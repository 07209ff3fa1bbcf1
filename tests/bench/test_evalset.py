"""The evaluation set's episodes are exactly what their definitions say, frame by frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from rayrg.data import evalset as E


def _plan(index: list[dict], babyai: dict | None = None, **mix: float) -> dict:
    cfg = E.EvalsetConfig(seed=3, mix=E.EvalsetMix(**{"rewound": 1.0, "truncated": 1.0, "swapped": 1.0, **mix}))
    return {"config": cfg.to_dict(), "index": index, "has_subtasks": True, "babyai_env_config": babyai}


def _episodes(path: Path) -> dict[str, list[dict]]:
    rows = pq.read_table(path).to_pylist()
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["episode_id"], []).append(r)
    return out


def test_progress_true_is_strictly_increasing_and_ends_at_one() -> None:
    completed = np.array([0, 0, 1, 1, 1, 2, 2, 3])
    p = E.progress_of_original(completed, 3)
    assert np.all(np.diff(p) > 0) and p[-1] == 1.0
    # Sub-task 0 spans rows 0..2: thirds of 1/3; row 2 completes it exactly.
    assert p[:3] == pytest.approx([1 / 9, 2 / 9, 3 / 9])
    assert p[4] == pytest.approx((1 + 2 / 3) / 3)


def test_negatives_follow_their_definitions(make_toy_dataset, tmp_path: Path) -> None:
    import pyarrow as pa

    src = make_toy_dataset(num_episodes=4, steps=(9, 12, 7, 5), shards=1, seed=5)
    shard = next(src.glob("*.parquet"))
    table = pq.read_table(shard)  # one instruction per episode, so swaps have partners
    text = [f"go to the {e[-1]} ball" for e in table.column("episode_id").to_pylist()]
    pq.write_table(table.set_column(table.column_names.index("instruction"), table.schema.field("instruction"),
                                    pa.array(text)), shard)
    index = E._index_rows(str(shard))
    stats = E.build_shard(str(shard), str(tmp_path / "out.parquet"), _plan(index))
    eps = _episodes(tmp_path / "out.parquet")
    original_src = {r["episode_id"]: r for r in index}
    successes = [e for e, r in original_src.items() if r["success"]]
    assert stats["original"] == len(successes) == 2 and stats["failed_originals_dropped"] == 2
    src_rows = _episodes(shard)
    for eid in successes:
        orig, source = eps[eid], src_rows[eid]
        T = len(orig)
        # original: unchanged apart from the evaluation columns
        assert [{k: v for k, v in r.items() if k not in (E.EVALSET_KIND, E.PROGRESS_TRUE)} for r in orig] == source
        assert all(r["evalset_kind"] == "original" and r["success"] for r in orig)
        prog = [r["progress_true"] for r in orig]
        assert np.all(np.diff(prog) > 0) and prog[-1] == 1.0

        trunc = eps[f"{eid}~truncated"]
        k = len(trunc)
        assert 1 <= k < T
        for t, r in enumerate(trunc):
            assert (r["frame"], r["action"], r["expert_action"], r["subtasks_completed"], r["progress_true"]) == (
                orig[t]["frame"], orig[t]["action"], orig[t]["expert_action"], orig[t]["subtasks_completed"],
                orig[t]["progress_true"])
            assert r["step"] == t and not r["success"] and not r["terminal"]
            assert r["evalset_kind"] == "truncated" and r["task_id"] == orig[t]["task_id"] + "~truncated"
        assert trunc[-1]["truncated"] and trunc[-1]["final_frame"] == orig[k]["frame"]
        assert all(r["final_frame"] is None for r in trunc[:-1])
        assert max(r["progress_true"] for r in trunc) < 1.0

        rew = eps[f"{eid}~rewound"]
        kinds = [r["action_name"] for r in rew]
        k = kinds.index("rewind")
        m = len(rew) - k
        assert 1 <= k < T and 1 <= m <= k
        for t in range(k):  # forward: the original's rows
            assert rew[t]["frame"] == orig[t]["frame"] and rew[t]["action"] == orig[t]["action"]
            assert rew[t]["progress_true"] == orig[t]["progress_true"]
        for i in range(m):  # reverse row k+i shows f_{k-i} and leads to f_{k-i-1}
            r = rew[k + i]
            assert r["frame"] == orig[k - i]["frame"]
            assert r["action"] == -1 and r["expert_action"] == -1 and not r["is_random_action"]
            want = 0.0 if k - i - 2 < 0 else orig[k - i - 2]["progress_true"]
            assert r["progress_true"] == pytest.approx(want)
            assert r["subtasks_completed"] == (0 if k - i - 2 < 0 else orig[k - i - 2]["subtasks_completed"])
        assert rew[-1]["final_frame"] == orig[k - m]["frame"] and rew[-1]["truncated"]
        assert [r["step"] for r in rew] == list(range(len(rew)))
        assert not any(r["success"] or r["terminal"] for r in rew)

        sw = eps[f"{eid}~swapped"]
        partner = next(r for r in index if r["instruction"] == sw[0]["instruction"] and r["episode_id"] != eid)
        assert partner["task_id"] != orig[0]["task_id"]
        for t, r in enumerate(sw):
            assert r["frame"] == orig[t]["frame"] and r["action"] == orig[t]["action"]
            assert r["expert_action"] == -1 and r["num_subtasks"] == partner["num_subtasks"]
            assert not r["success"] and r["evalset_kind"] == "swapped"


def test_toy_instructions_are_all_equal_so_no_swap(make_toy_dataset, tmp_path: Path) -> None:
    # make_toy_dataset gives every episode the same instruction: no partner qualifies.
    src = make_toy_dataset(num_episodes=2, steps=(6, 6), shards=1, seed=9)
    shard = next(src.glob("*.parquet"))
    index = E._index_rows(str(shard))
    stats = E.build_shard(str(shard), str(tmp_path / "o.parquet"), _plan(index, rewound=0.0, truncated=0.0))
    assert stats["swapped"] == 0 and stats["swap_without_partner"] == 1


def test_babyai_swap_is_checked_by_replay(tmp_path: Path) -> None:
    """The replay says the frames satisfy their own mission (such a partner would be rejected)
    and not another one, which is kept with the swapped mission's sub-task counts."""
    from rayrg.data.generate import GenerateConfig, rollout_episode
    from rayrg.data.schema import write_shard

    cfg = GenerateConfig(noise=0.0, max_steps=60)
    rows, _ = rollout_episode(1, cfg.train_seed(1, 0), 0.0, 60, cfg.env_config)
    assert rows[0]["success"]
    write_shard(rows, tmp_path / "part-00000.parquet")
    me = E._index_rows(str(tmp_path / "part-00000.parquet"))[0]
    env = {k: getattr(cfg, k) for k in ("room_size", "num_rows", "num_cols", "num_distractors", "tile_size")}
    actions = [r["action"] for r in rows]
    ok, done = E.babyai_replay(env, me, me, actions)
    assert ok and done[-1] == 1  # its own mission: satisfied, so never a swap partner
    other_rows, _ = rollout_episode(2, cfg.train_seed(2, 0), 0.0, 5, cfg.env_config)
    other = {**{k: other_rows[0][k] for k in ("episode_id", "task_id", "instruction", "num_subtasks", "seed")}}
    assert other["instruction"] != me["instruction"]
    ok, done = E.babyai_replay(env, me, other, actions)
    assert not ok and len(done) == len(actions) and max(done) < 2
    # In build_shard: the other mission is kept, with the replay's sub-task counts.
    index = [me, other]
    stats = E.build_shard(str(tmp_path / "part-00000.parquet"), str(tmp_path / "o.parquet"),
                          _plan(index, env, rewound=0.0, truncated=0.0))
    assert stats["swapped"] == 1
    sw = [r for r in pq.read_table(tmp_path / "o.parquet").to_pylist() if r["evalset_kind"] == "swapped"]
    assert sw[0]["instruction"] == other["instruction"]
    assert [r["subtasks_completed"] for r in sw] == done


def test_skills_dataset_builds_with_swaps_left_unchecked(ray_local, tmp_path: Path) -> None:
    """A skill episode starts mid-session (protocol: skills), so its seed's reset is not its
    first frame and no replay can check a swap: the set is built, and its metadata says the
    swaps and their sub-task counts are unchecked, and why (a replay from the seed refused it)."""
    from rayrg.contracts.datasets import DatasetMetadata
    from rayrg.data.generate import GenerateConfig, generate

    config = GenerateConfig(protocol="skills", subtask_counts=[2], episodes_per_count=3,
                            eval_tasks_per_count=1, val_tasks_per_count=1, noise=0.0)
    data = generate(config, tmp_path / "data")
    out = E.build_evalset(str(Path(data) / "trajectories"), str(tmp_path / "evalset"))
    meta = DatasetMetadata.read(out)
    assert meta.extra[E.EVALSET_KEY]["swap_check"] == "different task and instruction (no simulator check)"
    assert "skill episodes start mid-session" in meta.extra[E.MISSING_BY_KIND_KEY]["swapped"]["subtasks"]
    assert meta.extra[E.EVALSET_KEY]["counts"]["swapped"] > 0
