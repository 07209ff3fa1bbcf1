"""Minari datasets (arrow backend) <-> the rayrg trajectory format.

``MINARI.import_(source, out, MinariImportConfig(...))`` reads a local Minari dataset with ``minari.load_dataset``
(never downloading) and writes a trajectory dataset at ``out``. ``MINARI.export(dataset,
out, reward_column)`` writes a copy of the *source* Minari dataset in which only the
``rewards`` column holds ``reward_column`` (float32); every other byte of data, images
included, is the source's, except ``data/metadata.json``: a new ``dataset_id`` and where the
rewards came from (:mod:`rayrg.data.export_meta`). Minari 0.5.4 is an optional dependency
(``rayrg[minari]``).

Minari layout (arrow backend), one directory per dataset::

    <root>/data/metadata.json             dataset id, spaces, totals, jpeg_encoding
    <root>/data/<ep>/metadata.json        id, total_steps, seed of episode <ep>
    <root>/data/<ep>/part-0.arrow         T+1 rows: observations (a struct) include the final
                                          one; actions, rewards, terminations, truncations
                                          are padded with one trailing row

Mapping of episode ``<ep>`` (T steps) to rows ``t = 0..T-1``:

* ``episode_id`` ``minari-ep<ep>`` (export reads ``<ep>`` back from it), ``step`` ``t``;
* ``instruction`` — ``observations[instruction_key][t]`` (a ``Text`` space; BabyAI's mission);
* ``frame`` — ``observations[image_key][t]`` (HxWx3 uint8) as PNG; ``final_frame`` on the
  last row is ``observations[image_key][T]``;
* ``action`` — the Discrete action; ``action_name`` from ``action_names`` (or ``action <a>``);
* ``terminal`` / ``truncated`` — ``terminations[t]`` / ``truncations[t]``;
* ``success`` — the ``success_info`` key of the episode's last info if given, else the
  episode terminated with a positive last reward (MiniGrid/BabyAI reward only the goal);
* ``seed`` — the episode's recorded seed (-1 if none);
* ``reward_minari`` — the dataset's own rewards (float32), a reward column like a label's.

What rayrg uses but a Minari dataset does not record — ground-truth sub-task progress, the
expert's action, whether an action was exploration noise — is not invented: the columns
hold their "unknown" values (``expert_action`` -1, ``num_subtasks`` and
``subtasks_completed`` 0, ``is_random_action`` false) and ``metadata.json`` lists each
under ``extra["missing_ground_truth"]`` with the reason, so a report that needs it skips with that reason.
Labelled copies keep ``extra`` and therefore the list.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from rayrg.config import ConfigError, StageConfig
from rayrg.data.access import (
    MISSING_TRUTH_KEY,
    PROVENANCE_KEY,
    Dataset,
    episode_ends,
    require_finished,
)
from rayrg.data.export_meta import EXPORT_KEY, export_record, resolve_reward, variant
from rayrg.data.schema import (
    METADATA_FILE,
    TRANSITION_SCHEMA,
    DatasetError,
    DatasetMetadata,
    encode_png,
    write_shard,
)
from rayrg.provenance import OnChange, claim, dataset_fingerprint
from rayrg.storage import Location, local_only, native, resolve

# Key in DatasetMetadata.extra: where the data came from (export needs "root").
SOURCE_KEY = "minari"
EPISODE_PREFIX = "minari-ep"
SOURCE_REWARD_COLUMN = "reward_minari"
_EPISODE_ID = re.compile(rf"^{EPISODE_PREFIX}(\d+)$")
# What a Minari dataset lacks, under the access layer's MISSING_TRUTH_KEY: readers that need
# it (reward-quality reports, simulated labels) skip or refuse with this reason.
# Why the Minari side of an import or export is a local folder (a storage URI is refused).
LOCAL_REASON = "Minari reads and writes a dataset as a local folder (minari.load_dataset)"
_LACKS = {
    "expert_action": "a Minari dataset records the actions taken, not an expert's (-1 = unknown)",
    "subtasks": "a Minari dataset has no ground-truth sub-tasks (num_subtasks and subtasks_completed are 0)",
    "is_random_action": "a Minari dataset does not mark exploration-noise actions (false = unknown)",
}


def _minari() -> Any:
    try:
        import minari
    except ImportError as exc:
        raise ConfigError("Minari support needs the 'minari' extra: pip install 'rayrg[minari]'") from exc
    return minari


def derived_id(source_id: str, variant_name: str) -> str:
    """``<ns>/<name>-v<N>`` -> ``<ns>/<name>-<variant>-v0``: a relabelled copy is a new dataset."""
    base = re.sub(r"-v\d+$", "", source_id)
    return f"{base}-{re.sub(r'[^A-Za-z0-9_]+', '_', variant_name)}-v0"


def episode_key(index: int) -> str:
    return f"{EPISODE_PREFIX}{index}"


def episode_index(episode_id: str) -> int:
    match = _EPISODE_ID.match(episode_id)
    if match is None:
        raise DatasetError(f"episode '{episode_id}' is not a Minari episode (expected '{EPISODE_PREFIX}<n>')")
    return int(match.group(1))


def resolve_root(source: str | Path) -> Path:
    """A Minari dataset's root (the folder holding ``data/``) from a path or a dataset id."""
    path = local_only(source, "import minari SOURCE", LOCAL_REASON).expanduser()
    if not path.is_dir():
        # A dataset id: Minari's local store is $MINARI_DATASETS_PATH (default ~/.minari/datasets).
        store = Path(os.environ.get("MINARI_DATASETS_PATH", Path.home() / ".minari" / "datasets"))
        path = store / str(source)
    if path.name == "data" and (path / METADATA_FILE).is_file():
        path = path.parent
    if not (path / "data" / METADATA_FILE).is_file():
        raise DatasetError(f"{source}: not a local Minari dataset (no data/{METADATA_FILE} under {path})")
    return path.resolve()


def _source_fingerprint(root: Path) -> dict[str, Any]:
    """Names, sizes and mtimes of the Minari files (hashing the frames would read them all)."""
    files = sorted(p for p in (root / "data").rglob("*") if p.is_file())
    return {"root": str(root), "files": [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                                         for p in files]}


def _episode_rows(episode: Any, dataset_id: str, env_name: str, seed: int, opts: dict[str, Any]) -> list[dict[str, Any]]:
    index = int(episode.id)
    observations = episode.observations
    if not isinstance(observations, dict):
        raise DatasetError(f"{dataset_id}: episode {index}: observations are not a Dict space "
                           f"(need '{opts['image_key']}' and '{opts['instruction_key']}')")
    for key in (opts["image_key"], opts["instruction_key"]):
        if key not in observations:
            raise DatasetError(f"{dataset_id}: episode {index}: no observation '{key}' "
                               f"(observations: {sorted(observations)})")
    images = np.asarray(observations[opts["image_key"]])
    missions = list(observations[opts["instruction_key"]])
    actions = np.asarray(episode.actions)
    steps = len(actions)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or len(images) != steps + 1:
        raise DatasetError(f"{dataset_id}: episode {index}: observation '{opts['image_key']}' has shape "
                           f"{images.shape} {images.dtype}, expected ({steps + 1}, H, W, 3) uint8")
    if actions.ndim != 1 or not np.issubdtype(actions.dtype, np.integer):
        raise DatasetError(f"{dataset_id}: episode {index}: actions of shape {actions.shape} {actions.dtype}; "
                           "rayrg needs one Discrete action per step")
    names: Sequence[str] | None = opts["action_names"]
    if names is not None and actions.size and (actions.min() < 0 or actions.max() >= len(names)):
        raise DatasetError(f"{dataset_id}: episode {index}: action {int(actions.max())} has no name "
                           f"({len(names)} action_names given)")
    rewards = np.asarray(episode.rewards, dtype=np.float32)
    terminations = np.asarray(episode.terminations, dtype=bool)
    truncations = np.asarray(episode.truncations, dtype=bool)
    key = opts["success_info"]
    if key is not None:
        if key not in (episode.infos or {}):
            raise DatasetError(f"{dataset_id}: episode {index}: no info '{key}' (success_info)")
        success = bool(np.asarray(episode.infos[key])[-1])
    else:
        success = bool(steps and terminations[-1] and rewards[-1] > 0)
    episode_id = episode_key(index)
    rows = []
    for t in range(steps):
        action = int(actions[t])
        rows.append({
            "episode_id": episode_id, "step": t, "task_id": f"{dataset_id}:{episode_id}",
            "instruction": str(missions[t]), "num_subtasks": 0, "env_name": env_name, "seed": seed,
            "frame": encode_png(images[t]),
            "final_frame": encode_png(images[steps]) if t == steps - 1 else None,
            "action": action, "action_name": names[action] if names is not None else f"action {action}",
            "expert_action": -1, "is_random_action": False,
            "terminal": bool(terminations[t]), "truncated": bool(truncations[t]),
            "subtasks_completed": 0, "success": success, SOURCE_REWARD_COLUMN: float(rewards[t]),
        })
    return rows


def _shard_table(rows: list[dict[str, Any]]) -> pa.Table:
    schema = pa.schema([*TRANSITION_SCHEMA, pa.field(SOURCE_REWARD_COLUMN, pa.float32())])
    return pa.Table.from_pylist(rows, schema=schema)


def _read_arrow(path: Path) -> pa.Table:
    # The arrow backend writes each episode with pyarrow.dataset in the Arrow IPC file format.
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def _write_arrow(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    tmp.replace(path)


class MinariImportConfig(StageConfig):
    """``rayrg import minari``: which observation keys hold the frame and the instruction."""

    image_key: str = Field("image", description="Observation key of the RGB frame.")
    instruction_key: str = Field("mission", description="Observation key of the instruction text.")
    action_names: list[str] | None = Field(None, description="Names of the discrete actions, by id.")
    success_info: str | None = Field(
        None, description="Info key that says an episode succeeded (default: terminated with a "
                          "positive last reward).")
    episodes_per_shard: int = Field(64, ge=1, description="Episodes per Parquet shard.")


class MinariExportConfig(StageConfig):
    """``rayrg export minari``: the copy's dataset id."""

    dataset_id: str | None = Field(
        None, description="dataset_id written into the copy (default: <ns>/<name>-<variant>-v0).")


class MinariFormat:
    """``rayrg import minari`` / ``rayrg export minari`` (:mod:`rayrg.data.formats`)."""

    name = "minari"
    import_options = MinariImportConfig
    export_options = MinariExportConfig
    makes_eval_tasks = False

    def import_(self, source: str | Path, out: str | Path | Location, options: MinariImportConfig | None = None,
                *, on_change: OnChange = "refuse", address: str | None = None) -> Any:
        """Import the local Minari dataset ``source`` (a path or a dataset id) into ``out``
        (a local path or a storage URI: :mod:`rayrg.storage`)."""
        from rayrg.data.formats import Imported

        config = options or MinariImportConfig()
        minari = _minari()
        root = resolve_root(source)
        opts = config.to_dict()
        episodes_per_shard = config.episodes_per_shard
        location = resolve(out)
        out = native(location)
        claimed = claim(location, "minari-import", {"source": _source_fingerprint(root), "options": opts},
                        on_change=on_change)
        if claimed.done:
            return Imported(out)
        # load_dataset joins its id onto the store path; an absolute path therefore names
        # this folder directly, and download=False (the default) never reaches the network.
        dataset = minari.load_dataset(str(root))
        source_meta = json.loads((root / "data" / METADATA_FILE).read_text())
        dataset_id = str(source_meta.get("dataset_id", root.name))
        env_name = f"minari:{dataset_id}"
        seeds = [int(m.get("seed", -1)) for m in dataset.storage.get_episode_metadata(dataset.episode_indices)]
        if location.is_local:
            location.mkdirs()
        shard, rows, episodes, transitions, successes = 0, [], 0, 0, 0

        def flush() -> None:
            nonlocal shard, rows
            if rows:
                write_shard(_shard_table(rows), location / f"part-{shard:05d}.parquet")
                shard, rows = shard + 1, []

        for n, index in enumerate(dataset.episode_indices):
            # One episode per read: Minari unifies the Arrow schemas of the episodes it reads
            # together, which fails where episodes stored rewards of different dtypes (an
            # episode whose rewards were all Python ints stores int64, the others double).
            episode = next(iter(dataset.iterate_episodes([int(index)])))
            episode_rows = _episode_rows(episode, dataset_id, env_name, seeds[n], opts)
            if not episode_rows:
                continue  # a zero-step episode has no transition to keep
            rows.extend(episode_rows)
            episodes += 1
            transitions += len(episode_rows)
            successes += int(episode_rows[0]["success"])
            if episodes % episodes_per_shard == 0:
                flush()
        flush()
        if not episodes:
            raise DatasetError(f"{source}: the Minari dataset has no episode with a step")
        lacks = dict(_LACKS)
        if any(s < 0 for s in seeds):
            lacks["seed"] = "the Minari dataset records no seed for some episodes (-1 = unknown)"
        DatasetMetadata(
            generator="rayrg.data.minari:import", env_name=env_name, fingerprint=claimed.fingerprint,
            num_episodes=episodes, num_transitions=transitions, seeds=sorted({s for s in seeds if s >= 0}),
            extra={
                SOURCE_KEY: {"root": str(root), "dataset_id": dataset_id, "options": opts,
                             "jpeg_encoding": bool(source_meta.get("jpeg_encoding", False)),
                             "successes": successes,
                             "success_rule": f"info '{config.success_info}'" if config.success_info
                             else "terminated with a positive last reward"},
                MISSING_TRUTH_KEY: lacks,
                "action_names": opts["action_names"],
                PROVENANCE_KEY: {SOURCE_REWARD_COLUMN: {"method": "minari", "source": str(root),
                                                        "definition": "the Minari dataset's rewards"}},
            },
        ).write(location)
        claimed.finish(dataset=str(out), episodes=episodes, transitions=transitions)
        return Imported(out)

    def export(self, dataset: str | Path | Location, out: str | Path, reward_column: str | None = None,
               options: MinariExportConfig | None = None, *, on_change: OnChange = "refuse",
               allow_unfinished: bool = False) -> Path:
        """A copy of ``dataset``'s Minari source at ``out`` with ``reward_column`` as its rewards.

        ``dataset`` (rayrg's side) may be a storage URI; ``out`` is a Minari dataset, a local
        folder (a URI is refused in one line, before any work).

        ``dataset_id``: written into the copy's ``data/metadata.json`` (default: the source's
        with the reward variant, ``<ns>/<name>-<variant>-v0``: the copy's rewards are not the
        source's); the metadata also records where the rewards came from (:mod:`export_meta`).
        """
        dataset_id = (options or MinariExportConfig()).dataset_id
        _minari()
        out = local_only(out, "export minari --out", LOCAL_REASON, output=True)
        dataset = native(resolve(dataset))
        require_finished(dataset, "export minari", allow=allow_unfinished)
        data = Dataset.open(dataset)
        source = data.metadata.extra.get(SOURCE_KEY, {}).get("root")
        if not source:
            raise DatasetError(f"{dataset}: not imported from Minari (no extra.{SOURCE_KEY}.root in "
                               f"{METADATA_FILE}); export minari needs a dataset made by 'rayrg import minari'")
        root = resolve_root(source)
        reward_column = resolve_reward(data, reward_column, "minari", skip=(SOURCE_REWARD_COLUMN,))
        source_id = str(json.loads((root / "data" / METADATA_FILE).read_text()).get("dataset_id") or root.name)
        dataset_id = dataset_id or derived_id(source_id, variant(reward_column))
        table = data.read(["episode_id", "step", reward_column])
        rewards = np.asarray(table.column(reward_column).to_numpy(zero_copy_only=False), dtype=np.float32)
        if np.isnan(rewards).any():
            raise DatasetError(f"{dataset}: column '{reward_column}' has {int(np.isnan(rewards).sum())} NaN "
                               "rewards (failed labels); label again before exporting")
        per_episode = dict(self._episode_rewards(table.column("episode_id").to_pylist(), rewards, dataset))
        episode_dirs = {int(p.name): p for p in (root / "data").iterdir() if p.is_dir() and p.name.isdigit()}
        missing = sorted(set(episode_dirs) - set(per_episode))
        unknown_eps = sorted(set(per_episode) - set(episode_dirs))
        if missing or unknown_eps:
            raise DatasetError(f"{dataset}: episodes do not match the Minari source {root} "
                               f"(missing {missing[:5]}, not in the source {unknown_eps[:5]})")
        if out.resolve() == root:
            raise ConfigError(f"export minari: --out must differ from the source dataset {root}")
        claimed = claim(out, "minari-export", {"dataset": dataset_fingerprint(dataset), "column": reward_column,
                                               "source": _source_fingerprint(root), "dataset_id": dataset_id},
                        on_change=on_change)
        if claimed.done:
            return out
        shutil.copytree(root / "data", out / "data", dirs_exist_ok=True)
        for index, values in sorted(per_episode.items()):
            path = out / "data" / str(index) / "part-0.arrow"
            episode = _read_arrow(path)
            if episode.num_rows != len(values) + 1:
                raise DatasetError(f"{path}: {episode.num_rows} rows, expected {len(values) + 1} "
                                   f"({len(values)} transitions of episode {episode_key(index)} + the final observation)")
            position = episode.schema.get_field_index("rewards")
            old = episode.schema.field(position)
            # Row T is Minari's padding after the last step: kept as it was, only cast.
            pad = np.asarray(episode.column("rewards").to_numpy(zero_copy_only=False)[-1:], dtype=np.float32)
            column = pa.array(np.concatenate([values, pad]), type=pa.float32())
            episode = episode.set_column(position, pa.field("rewards", pa.float32(), old.nullable, old.metadata), column)
            _write_arrow(episode, path)
        meta_path = out / "data" / METADATA_FILE
        meta = json.loads(meta_path.read_text())
        meta["dataset_id"] = dataset_id
        meta[EXPORT_KEY] = export_record(data, reward_column, dataset_id, source_id)
        meta_path.write_text(json.dumps(meta))
        claimed.finish(dataset=str(out), column=reward_column, episodes=len(per_episode))
        return out

    @staticmethod
    def load_hint(out: str | Path) -> str:
        """How to open the export with Minari's own reader: ``load_dataset`` joins its argument
        onto ``$MINARI_DATASETS_PATH``, so a relative ``--out`` must be passed absolute."""
        path = Path(out).resolve()
        dataset_id = json.loads((path / "data" / METADATA_FILE).read_text())["dataset_id"]
        store = Path(os.environ.get("MINARI_DATASETS_PATH", Path.home() / ".minari" / "datasets")).resolve()
        where = repr(dataset_id) if path == store / dataset_id else repr(str(path))
        return f"{path} (dataset_id {dataset_id}; load with minari.load_dataset({where}))"

    @staticmethod
    def _episode_rewards(episode_ids: list[str], rewards: np.ndarray, dataset: Path | Location) -> Iterator[tuple[int, np.ndarray]]:
        start = 0
        for end in np.flatnonzero(episode_ends(episode_ids)) + 1:
            yield episode_index(episode_ids[start]), rewards[start:end]
            start = end


MINARI = MinariFormat()
