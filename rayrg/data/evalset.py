"""``rayrg evalset``: an evaluation set for reward models, built from a trajectory dataset.

The successful episodes of the source are kept as they are (``original``); negatives are
built from each of them, with their truth by construction (ReWiND, RoboReward):

* ``rewound``: the episode plays forward for ``k`` transitions (``1 <= k < T``, so it never
  reaches success), then plays back in reverse for ``m`` transitions (``1 <= m <= k``);
* ``truncated``: the episode is cut after ``k`` transitions, before success (``1 <= k < T``,
  and before the row where every sub-task is done);
* ``swapped``: all frames and actions of the episode, paired with the instruction of another
  episode of a different task whose goal these frames do not satisfy. For BabyAI this is
  checked by replaying the actions in the original layout against the swapped mission
  (BabyAI's own verifier re-bound to the layout); a candidate whose mission the replay
  completes is rejected and the next one tried. Other environments: a different task and
  a different instruction text (recorded as unchecked in the metadata).

Rows are one per transition ``(o_t, a_t, o_t+1)`` as in every trajectory dataset
(:mod:`rayrg.data.schema`). Episode ``E``'s negatives are ``E~rewound``, ``E~truncated`` and
``E~swapped``, written right after ``E`` in the same shard. Column definitions per kind
(``T`` rows of the original, frames ``f_0..f_T``, ``f_T`` its final frame):

=====================  ==========================================================================
column                 definition
=====================  ==========================================================================
``evalset_kind``       ``original`` | ``rewound`` | ``truncated`` | ``swapped``
``success``            true only for originals (every original succeeded; failed source
                       episodes and successes of a single transition are left out and
                       counted in the metadata: ``failed_originals_dropped``, ``too_short``)
``progress_true``      true progress *after* the row's transition, in [0, 1]. Originals: with
                       sub-task ``j`` spanning rows ``s_j..e_j`` (``e_j``: the row whose
                       ``subtasks_completed`` reaches ``j+1``), row ``t`` of it has
                       ``(j + (t - s_j + 1) / (e_j - s_j + 1)) / N`` — strictly increasing, and
                       1.0 exactly on the last row of a success. Datasets without sub-task
                       truth use one sub-task spanning the episode: ``(t + 1) / T``.
                       Truncated: the original's values of the kept rows. Rewound: forward rows
                       the original's; reverse row ``k+i`` (frame ``f_k-i`` -> ``f_k-i-1``) has the
                       progress of ``f_k-i-1`` (the original's row ``k-i-2``; 0 for ``f_0``).
                       Swapped: sub-tasks of the *swapped* mission the replay completed after
                       the row, over its sub-tasks (no fraction: an unfinished sub-task has no
                       known length); 0 where no simulator checks it.
``frame``              originals/truncated/swapped: the original's; rewound reverse row ``k+i``:
                       ``f_k-i``. ``final_frame`` (last row only): truncated ``f_k``,
                       rewound ``f_k-m``, swapped ``f_T``. ``state``/``final_state`` likewise.
``action``             the original's; rewound reverse rows: -1 (``action_name`` "rewind"):
                       no action of the environment plays a frame back
``expert_action``      the original's on rows that are the original's; -1 (unknown) on rewound
                       reverse rows and on every swapped row (the expert of the swapped
                       mission was not asked)
``is_random_action``   the original's; False on rewound reverse rows
``subtasks_completed`` originals/truncated/forward rows: the original's; rewound reverse rows:
                       sub-tasks done in the frame after the row (the original's value before
                       ``f_k-i-1``: it decreases as the rewind undoes them); swapped: the swapped
                       mission's count from the replay (0 where unchecked)
``num_subtasks``,      the original's, except swapped: the swapped episode's instruction and
``instruction``        sub-task count
``task_id``            ``<original task_id>~<kind>`` for negatives
``terminal``           the original's on originals; False on every negative row (no goal reached)
``truncated``          True on the last row of every negative (stopped by construction)
=====================  ==========================================================================

A labelled source's ``reward_*``/``progress_*`` columns are not carried (they would be wrong on
rebuilt rows): label the evaluation set itself.

Truth a kind cannot give: the per-transition ``good(t)`` of :mod:`rayrg.rewards.truth` needs
the expert's action for the action taken, which rewound reverse rows (no action) and swapped
rows (no expert for the swapped mission) lack. The metadata records this under
``missing_ground_truth_by_kind``; label methods that need it (simulated labels) leave those
kinds' rows NaN and say so, and the bench's Table-I metrics leave them out.

Seed and mix are config (:class:`EvalsetConfig`); the output is keyed to the source
dataset's fingerprint and the config (:func:`rayrg.provenance.claim`). Shards are processed
one Ray Data task each (episodes never span shards), so memory follows a shard, not the set.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from rayrg.config import StageConfig
from rayrg.data.schema import DatasetError, DatasetMetadata, write_shard
from rayrg.provenance import OnChange, claim, dataset_fingerprint
from rayrg.storage import Location, native, resolve

GENERATOR = "rayrg.data.evalset"
BUILDER_VERSION = "1"
KINDS = ("original", "rewound", "truncated", "swapped")
NEGATIVE_KINDS = KINDS[1:]
# The evaluation-set columns are registered once, in the dataset contract's column families.
from rayrg.contracts.columns import EVALSET_KIND, PROGRESS_TRUE  # noqa: E402

EVALSET_FIELDS = (pa.field(EVALSET_KIND, pa.string()), pa.field(PROGRESS_TRUE, pa.float32()))
# Metadata ``extra`` keys.
EVALSET_KEY = "evalset"
MISSING_BY_KIND_KEY = "missing_ground_truth_by_kind"
SEP = "~"  # <original episode_id>~<kind>
TRUTH_LACKING = {
    "rewound": {"expert_action": "reverse rows play frames back: no action was taken, so none is the expert's"},
    "swapped": {"expert_action": "the expert was not asked about the swapped mission"},
}




class EvalsetMix(StageConfig):
    """The share of successful originals that get each negative (drawn per episode, seeded)."""

    rewound: float = Field(1.0, ge=0.0, le=1.0)
    truncated: float = Field(1.0, ge=0.0, le=1.0)
    swapped: float = Field(1.0, ge=0.0, le=1.0)


class EvalsetConfig(StageConfig):
    """``rayrg evalset``: how negatives are drawn from the successful episodes."""

    seed: int = Field(0, description="Seed of every draw (which negatives, cut points, swap partners).")
    mix: EvalsetMix = Field(default_factory=EvalsetMix)
    swap_tries: int = Field(8, ge=1, description="Swap partners tried per episode before giving up.")


# -- truth -----------------------------------------------------------------------------------


def progress_of_original(completed: np.ndarray, num_subtasks: int, has_subtasks: bool = True) -> np.ndarray:
    """``progress_true`` of a successful episode's rows (see the module docstring).

    A sub-task's segment ends on the row where ``subtasks_completed`` rises (the last one on
    the episode's last row); progress rises linearly over each segment's rows from the
    sub-tasks done before it to those done at its end, over ``num_subtasks``.
    """
    completed = np.asarray(completed, dtype=np.int64)
    T = len(completed)
    if not has_subtasks or num_subtasks <= 0 or T == 0:
        return ((np.arange(T) + 1) / max(T, 1)).astype(np.float64)
    previous = np.concatenate([[0], completed[:-1]])
    ends = [t for t in range(T - 1) if previous[t] < completed[t] < num_subtasks] + [T - 1]
    out = np.empty(T, dtype=np.float64)
    start, before = 0, 0
    for end in ends:
        after = int(completed[end]) if end < T - 1 else num_subtasks
        length = end - start + 1
        out[start:end + 1] = (before + (after - before) * (np.arange(length) + 1) / length) / num_subtasks
        start, before = end + 1, after
    return out


def _rng(seed: int, episode_id: str, salt: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(episode_id.encode()), salt])


def _col(table: pa.Table, name: str) -> list[Any]:
    return table.column(name).to_pylist()


def _set(table: pa.Table, name: str, values: list[Any] | pa.Array) -> pa.Table:
    field = table.schema.field(name)  # keeps the field's nullability: shards concatenate
    arr = values if isinstance(values, pa.Array) else pa.array(values, type=field.type)
    return table.set_column(table.column_names.index(name), field, arr)


def _final(table: pa.Table, image: bytes | None, state: bytes | None) -> pa.Table:
    n = table.num_rows
    table = _set(table, "final_frame", [None] * (n - 1) + [image])
    if "final_state" in table.column_names:
        table = _set(table, "final_state", [None] * (n - 1) + [state])
    return table


def _negative_common(table: pa.Table, episode_id: str, kind: str) -> pa.Table:
    n = table.num_rows
    table = _set(table, "episode_id", [f"{episode_id}{SEP}{kind}"] * n)
    table = _set(table, "step", list(range(n)))
    table = _set(table, "task_id", [f"{t}{SEP}{kind}" for t in _col(table, "task_id")])
    table = _set(table, "success", [False] * n)
    table = _set(table, "terminal", [False] * n)
    table = _set(table, "truncated", [False] * (n - 1) + [True])
    return _set(table, EVALSET_KIND, [kind] * n)


def make_truncated(episode: pa.Table, k: int) -> pa.Table:
    """The first ``k`` transitions of ``episode`` (an original with evalset columns)."""
    eid = episode.column("episode_id")[0].as_py()
    out = episode.slice(0, k)
    frame = episode.column("frame")[k].as_py()
    state = episode.column("state")[k].as_py() if "state" in episode.column_names else None
    return _final(_negative_common(out, eid, "truncated"), frame, state)


def make_rewound(episode: pa.Table, k: int, m: int) -> pa.Table:
    """Forward ``k`` transitions, then back ``m`` (see the module docstring)."""
    eid = episode.column("episode_id")[0].as_py()
    idx = list(range(k)) + [k - i for i in range(m)]
    out = episode.take(idx)
    progress = np.asarray(_col(episode, PROGRESS_TRUE), dtype=np.float64)
    completed = _col(episode, "subtasks_completed")
    before = lambda r: 0 if r < 0 else completed[r]  # noqa: E731 - done before frame f_{r+1}
    rev = range(k, k + m)
    prog = list(progress[:k]) + [0.0 if k - i - 2 < 0 else float(progress[k - i - 2]) for i in range(m)]
    out = _set(out, PROGRESS_TRUE, pa.array(prog, type=pa.float32()))
    out = _set(out, "subtasks_completed", _col(out, "subtasks_completed")[:k]
               + [before(k - i - 2) for i in range(m)])
    out = _set(out, "action", [a if r not in rev else -1 for r, a in enumerate(_col(out, "action"))])
    out = _set(out, "action_name", [a if r not in rev else "rewind" for r, a in enumerate(_col(out, "action_name"))])
    out = _set(out, "expert_action", [a if r not in rev else -1 for r, a in enumerate(_col(out, "expert_action"))])
    out = _set(out, "is_random_action", [a and r not in rev for r, a in enumerate(_col(out, "is_random_action"))])
    if "action_vector" in out.column_names:
        out = _set(out, "action_vector", [a if r not in rev else None for r, a in enumerate(_col(out, "action_vector"))])
    frame = episode.column("frame")[k - m].as_py()
    state = episode.column("state")[k - m].as_py() if "state" in episode.column_names else None
    return _final(_negative_common(out, eid, "rewound"), frame, state)


def make_swapped(episode: pa.Table, partner: dict[str, Any], completed: list[int] | None) -> pa.Table:
    """``episode``'s rows with ``partner``'s instruction; ``completed``: the swapped mission's
    sub-tasks after each row from a replay (None: unchecked, 0)."""
    eid = episode.column("episode_id")[0].as_py()
    n = episode.num_rows
    done = [0] * n if completed is None else list(completed)
    out = _set(episode, "instruction", [partner["instruction"]] * n)
    out = _set(out, "num_subtasks", [partner["num_subtasks"]] * n)
    out = _set(out, "subtasks_completed", done)
    out = _set(out, "expert_action", [-1] * n)
    out = _set(out, PROGRESS_TRUE, pa.array([c / max(partner["num_subtasks"], 1) for c in done], type=pa.float32()))
    return _negative_common(out, eid, "swapped")


# -- BabyAI replay check ---------------------------------------------------------------------


def babyai_replay(env_config: dict[str, Any], original: dict[str, Any], partner: dict[str, Any],
                  actions: list[int]) -> tuple[bool, list[int]]:
    """Replay ``actions`` in ``original``'s layout against ``partner``'s mission.

    Returns (the swapped mission succeeded, its sub-tasks completed after each action). The
    partner's instruction tree (BabyAI's verifier objects) is re-bound to the original layout
    with ``reset_verifier``: objects it names that the layout lacks can never be reached.
    """
    from rayrg.envs.babyai import BabyAIEnvConfig, make_env, mission_succeeded, reset_env, step_env

    fields = {k: (tuple(v) if k == "action_kinds" else v) for k, v in env_config.items()
              if k in BabyAIEnvConfig.__dataclass_fields__}
    cfg = BabyAIEnvConfig(**fields)
    env = make_env(int(original["num_subtasks"]), cfg, max_steps=100_000)
    reset_env(env, int(original["seed"]))
    other = make_env(int(partner["num_subtasks"]), cfg, max_steps=100_000)
    _, mission = reset_env(other, int(partner["seed"]))
    if mission != partner["instruction"]:
        raise DatasetError(f"swap partner {partner['episode_id']}: seed {partner['seed']} gives mission "
                           f"{mission!r}, the dataset says {partner['instruction']!r} (other env settings?)")
    instrs = other.unwrapped.instrs
    instrs.reset_verifier(env.unwrapped)
    env.unwrapped.instrs = instrs
    env.unwrapped.mission = mission
    done: list[int] = []
    for action in actions:
        _, completed, terminal, _ = step_env(env, int(action))
        done.append(completed)
        if terminal:
            break
    success = mission_succeeded(env)
    done += [done[-1] if done else 0] * (len(actions) - len(done))
    env.close()
    other.close()
    return success, done


# -- one shard -------------------------------------------------------------------------------


def _episodes(table: pa.Table) -> list[pa.Table]:
    from rayrg.data.access import iter_episodes

    return list(iter_episodes(table))


def build_shard(source_shard: str, out_shard: str, plan: dict[str, Any]) -> dict[str, Any]:
    """Write the evaluation episodes of one source shard; returns its counts."""
    from rayrg.data.access import read_shard_checked

    config = EvalsetConfig.from_dict(plan["config"])
    index: list[dict[str, Any]] = plan["index"]
    has_subtasks = plan["has_subtasks"]
    babyai = plan.get("babyai_env_config")
    table = read_shard_checked(source_shard)
    # A labelled source's reward columns would be wrong on rebuilt rows (a rewound row is no
    # transition that was labelled): the set carries none; label it afterwards.
    table = table.drop_columns([c for c in table.column_names if c.startswith(("reward_", "progress_"))])
    stats = {k: 0 for k in (*KINDS, "failed_originals_dropped", "swap_rejected_by_replay",
                            "swap_without_partner", "too_short")}
    parts: list[pa.Table] = []
    for episode in _episodes(table):
        eid = episode.column("episode_id")[0].as_py()
        if not episode.column("success")[0].as_py():
            stats["failed_originals_dropped"] += 1
            continue
        T = episode.num_rows
        if T < 2:  # one frame pair has no order to score, and no cut before success
            stats["too_short"] += 1
            continue
        completed = np.asarray(_col(episode, "subtasks_completed"), dtype=np.int64)
        n_sub = int(episode.column("num_subtasks")[0].as_py())
        prog = progress_of_original(completed, n_sub, has_subtasks)
        original = episode.append_column(EVALSET_KIND, pa.array(["original"] * T, pa.string()))
        original = original.append_column(PROGRESS_TRUE, pa.array(prog, pa.float32()))
        parts.append(original)
        stats["original"] += 1
        rng = _rng(config.seed, eid, 0)
        draws = {kind: rng.random() < getattr(config.mix, kind) for kind in NEGATIVE_KINDS}
        # Last row before every sub-task is done: a cut keeps only rows before it.
        full = np.flatnonzero(completed >= n_sub) if has_subtasks else np.array([], dtype=np.int64)
        limit = int(full[0]) if full.size else T - 1
        limit = min(limit, T - 1)
        if draws["rewound"] and limit >= 1:
            k = int(rng.integers(1, limit + 1))
            m = int(rng.integers(1, k + 1))
            parts.append(make_rewound(original, k, m))
            stats["rewound"] += 1
        if draws["truncated"] and limit >= 1:
            parts.append(make_truncated(original, int(rng.integers(1, limit + 1))))
            stats["truncated"] += 1
        if draws["swapped"]:
            me = next(r for r in index if r["episode_id"] == eid)
            candidates = [r for r in index if r["task_id"] != me["task_id"]
                          and r["instruction"] != me["instruction"]]
            order = _rng(config.seed, eid, 1).permutation(len(candidates))[:config.swap_tries]
            chosen = None
            for i in order:
                partner = candidates[int(i)]
                if babyai is None:
                    chosen = (partner, None)
                    break
                succeeded, done = babyai_replay(babyai, me, partner, _col(episode, "action"))
                if not succeeded:
                    chosen = (partner, done)
                    break
                stats["swap_rejected_by_replay"] += 1
            if chosen is None:
                stats["swap_without_partner"] += 1
            else:
                parts.append(make_swapped(original, *chosen))
                stats["swapped"] += 1
    rows = sum(p.num_rows for p in parts)
    if parts:
        write_shard(pa.concat_tables(parts), out_shard)
    return {**stats, "transitions": rows, "episodes": sum(stats[k] for k in KINDS)}


# -- the stage -------------------------------------------------------------------------------


def _index_rows(shard: str) -> list[dict[str, Any]]:
    from rayrg.data.access import episode_starts, read_shard_checked

    cols = ["episode_id", "task_id", "instruction", "num_subtasks", "seed", "success"]
    table = read_shard_checked(shard, cols)
    first = table.filter(pa.array(episode_starts(table.column("episode_id"))))
    return first.to_pylist()


def evalset_inputs(dataset: Path | Location, config: EvalsetConfig) -> dict[str, Any]:
    return {"dataset": dataset_fingerprint(dataset), "config": config.to_dict(), "builder": BUILDER_VERSION}


def build_evalset(dataset: str | Path | Location, out: str | Path | Location, config: EvalsetConfig | None = None,
                  address: str | None = None, on_change: OnChange = "refuse") -> Path | Location:
    """Build the evaluation set of ``dataset`` into ``out`` (see the module docstring)."""
    import ray

    from rayrg.data.access import Dataset
    from rayrg.errors import stage_errors
    from rayrg.runtime import init_ray

    config = config or EvalsetConfig()
    # Paths or storage URIs (rayrg.storage): a local one stays a Path, a URI its Location.
    dataset, out = native(resolve(dataset)), native(resolve(out))
    source = Dataset.open(dataset)
    if EVALSET_KIND in source.names:
        raise DatasetError(f"{dataset}: already an evaluation set (has '{EVALSET_KIND}'); "
                           "build one from a trajectory dataset")
    missing = source.missing_ground_truth
    if "success" in missing:
        raise DatasetError(f"{dataset}: no way to tell success ({missing['success']}); an evaluation "
                           "set is built from successful episodes")
    claimed = claim(out, "evalset", evalset_inputs(dataset, config), on_change=on_change)
    if claimed.done:
        return out
    meta = source.metadata
    init_ray(address)
    with stage_errors():
        # Ray Data: one task per shard (episodes never span shards), first the small index
        # (one row per episode), then the episodes, each shard streamed through its task.
        shards = [str(s) for s in source.shards]
        items = ray.data.from_items([{"shard": s} for s in shards], override_num_blocks=len(shards))
        index = [r for row in items.map(lambda r: {"rows": _index_rows(r["shard"])}, num_cpus=0.5).take_all()
                 for r in row["rows"]]
        if not any(r["success"] for r in index):
            raise DatasetError(f"{dataset}: no successful episode; an evaluation set is built from "
                               "successful episodes")
        babyai_cfg = None
        gen = meta.extra.get("config") or {}
        # A skill episode (data.generate.protocol: skills) starts mid-session, not at its seed's
        # reset, so no replay from the seed re-creates it: swaps are left unchecked there.
        skills = gen.get("protocol") == "skills"
        if meta.env_name == "babyai-chain" and not skills:
            babyai_cfg = {k: gen[k] for k in ("room_size", "num_rows", "num_cols", "num_distractors",
                                              "tile_size") if k in gen}
        plan = {"config": config.to_dict(), "index": index, "has_subtasks": "subtasks" not in missing,
                "babyai_env_config": babyai_cfg}
        plan_ref = ray.put(plan)
        resolve(out).mkdirs()

        def run(row: dict[str, Any]) -> dict[str, Any]:
            name = Path(row["shard"]).name
            return build_shard(row["shard"], str(out / name), ray.get(plan_ref))

        results = items.map(run, num_cpus=0.5).take_all()
    totals: dict[str, int] = {}
    for stats in results:
        for key, value in stats.items():
            totals[key] = totals.get(key, 0) + int(value)
    by_kind = {kind: dict(TRUTH_LACKING[kind]) for kind in TRUTH_LACKING}
    if babyai_cfg is None:
        why = "skill episodes start mid-session" if skills else "no simulator replays the swapped mission"
        by_kind.setdefault("swapped", {})["subtasks"] = f"{why}: its sub-tasks are taken as 0 (not checked)"
    DatasetMetadata(
        generator=GENERATOR, env_name=meta.env_name, fingerprint=claimed.fingerprint,
        num_episodes=totals.get("episodes", 0), num_transitions=totals.get("transitions", 0),
        seeds=[config.seed], noise=meta.noise,
        extra={**{k: v for k, v in meta.extra.items() if k in ("config", "missing_ground_truth")},
               EVALSET_KEY: {"source": str(dataset), "source_fingerprint": dataset_fingerprint(dataset),
                             "config": config.to_dict(), "builder_version": BUILDER_VERSION,
                             "counts": totals,
                             "swap_check": "babyai replay against the swapped mission" if babyai_cfg
                             else "different task and instruction (no simulator check)"},
               MISSING_BY_KIND_KEY: by_kind},
        column_kinds={EVALSET_KIND: "evalset", PROGRESS_TRUE: "evalset"},
    ).write(out)
    claimed.finish(episodes=totals.get("episodes", 0), counts=totals)
    return out


# -- for label methods and readers -----------------------------------------------------------


def kinds_lacking(dataset: str | Path, needs: list[str]) -> dict[str, str]:
    """``{kind: reason}`` of the evaluation-set kinds whose rows lack truth in ``needs``."""
    meta = DatasetMetadata.read(dataset)
    found = {}
    for kind, lacking in (meta.extra.get(MISSING_BY_KIND_KEY) or {}).items():
        reasons = [f"{k}: {v}" for k, v in lacking.items() if k in needs]
        if reasons:
            found[kind] = "; ".join(reasons)
    return found


def skip_kinds(dataset: str | Path, kinds: pa.Array | None, values: np.ndarray,
               needs: list[str]) -> tuple[np.ndarray, dict[str, str]]:
    """``values`` with NaN on rows of kinds lacking ``needs``, and ``{kind: reason}`` skipped."""
    if kinds is None:
        return values, {}
    lacking = kinds_lacking(dataset, needs)
    if not lacking:
        return values, {}
    kind = np.asarray(kinds.to_pylist(), dtype=object)
    mask = np.isin(kind, list(lacking))
    out = np.asarray(values, dtype=np.float32).copy()
    out[mask] = np.nan
    return out, {k: v for k, v in lacking.items() if (kind == k).any()}
