"""LeRobot v3.0 datasets in and out, read and written directly with pyarrow (no ``lerobot``).

The LeRobot v3.0 layout (as of lerobot 0.6.1)::

    <root>/meta/info.json            codebase_version "v3.0", fps, robot_type, features
                                     ({key: {dtype, shape, names}}), data_path, video_path
    <root>/meta/stats.json           per feature: min, max, mean, std, count (, quantiles)
    <root>/meta/tasks.parquet        pandas index ``task`` (the string), column ``task_index``
    <root>/meta/episodes/chunk-000/file-000.parquet
                                     episode_index, tasks, length, dataset_from_index,
                                     dataset_to_index, data/chunk_index, ..., and per video
                                     key videos/<key>/{chunk_index,file_index,from_timestamp}
    <root>/data/chunk-000/file-000.parquet
                                     one row per frame; image features are struct<bytes, path>
                                     (PNG) with the Hugging Face ``Image`` feature in the
                                     schema's ``huggingface`` metadata; a feature of shape
                                     [1] is a scalar column, shape [n] a list column
    <root>/videos/<key>/chunk-000/file-000.mp4
                                     video mode (dtype "video"): AV1, many episodes per file

Every frame carries the automatic columns timestamp, frame_index, episode_index, index
(global frame number) and task_index. Rewards are a convention: ``next.reward`` (float32,
shape [1]), ``next.done``, ``next.success`` (bool).

Import (one rayrg row per LeRobot frame; one shard per data file):

* ``episode_id`` = ``lerobot-ep<episode_index:06d>``, ``step`` = ``frame_index``;
* ``instruction`` = the frame's task string, ``task_id`` = ``task-<task_index>``;
* ``frame`` = the camera's image (PNG bytes kept as they are); ``final_frame`` stays null:
  LeRobot records no observation after an episode's last action;
* ``action_vector`` = ``action`` (float32 vector); ``action`` = ``expert_action`` = -1 and
  ``action_name`` a rendering of the vector (rayrg's discrete actions do not apply);
* ``success`` = any ``next.success`` of the episode; ``terminal`` = ``next.done`` (else
  ``next.success``) on the last frame; otherwise the last frame is ``truncated``.

What rayrg's ground truth needs but LeRobot lacks (sub-tasks, expert actions, and success
without ``next.success``) is listed in metadata ``extra["missing_ground_truth"]``; the
placeholders (0 sub-tasks, expert action -1) are never scored: reward reports skip such
datasets with the reason and simulated labels refuse (``Dataset.require_ground_truth``).

Export of a dataset imported here and labelled: a copy of the original files, unchanged
byte for byte except the data Parquet files, ``meta/info.json`` and ``meta/stats.json``,
which gain one float32 feature per reward variant (``next.reward`` for the chosen one,
``rayrg.<variant>`` for the others), plus ``sarm_progress.parquet``, the per-frame sidecar
RA-BC sample weighting reads (``index``, ``episode_index``, ``frame_index``,
``progress_sparse`` [, ``progress_dense``], float32, sorted by ``index``).
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from rayrg.config import ConfigError, StageConfig
from rayrg.contracts.versions import read_json_object
from rayrg.data.access import MISSING_TRUTH_KEY, Dataset, episode_ends, require_finished
from rayrg.data.export_meta import EXPORT_KEY, export_record
from rayrg.data.schema import (
    OPTIONAL_SCHEMA,
    REWARD_PREFIX,
    TRANSITION_SCHEMA,
    DatasetError,
    DatasetMetadata,
    encode_png,
    write_shard,
)
from rayrg.provenance import OnChange, claim, dataset_fingerprint, fingerprint
from rayrg.storage import Location, StorageError, local_only, native, resolve

log = logging.getLogger(__name__)

META_KEY = "lerobot"  # metadata extra: the source and the mapping, which export needs
ENV_NAME = "lerobot"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
SIDECAR_FILE = "sarm_progress.parquet"  # where RA-BC looks for progress by default
EPISODE_ID = "lerobot-ep{:06d}"
CHOSEN_FEATURE = "next.reward"
OTHER_FEATURE = "rayrg.{}"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Why the LeRobot side of an import or export is a local folder (a storage URI is refused).
LOCAL_REASON = "a LeRobot dataset is a local folder here (LeRobotDataset(root=...) and its videos are read locally)"


class LeRobotImportConfig(StageConfig):
    """``rayrg import lerobot``: which camera and how many episodes."""

    camera: str | None = Field(None, description="Image/video feature to use as the frame (default: the first).")
    action_key: str = Field("action", description="Feature holding the action vector.")
    max_episodes: int | None = Field(None, ge=1, description="Import at most this many episodes (lowest indices).")


class LeRobotExportConfig(StageConfig):
    """``rayrg export lerobot``: which reward columns go where."""

    dense_column: str | None = Field(
        None, description="A second reward column written as its own feature beside the chosen one "
                          "(reward_<variant> or <variant>).")


# -- reading the source ---------------------------------------------------------------------
def read_info(root: Path) -> dict[str, Any]:
    path = root / INFO_PATH
    if not path.is_file():
        raise DatasetError(f"{root}: no {INFO_PATH} (not a LeRobot dataset)")
    info = read_json_object(path, "LeRobot info")
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3."):
        raise DatasetError(f"{path}: codebase_version {version or '?'}; rayrg reads LeRobot v3.x "
                           "(convert older datasets with lerobot's v3.0 converter)")
    if not isinstance(info.get("features"), dict):
        raise DatasetError(f"{path}: no 'features' mapping")
    return info


def data_files(root: Path) -> list[Path]:
    files = sorted((root / "data").glob("*/*.parquet"))
    if not files:
        raise DatasetError(f"{root}: no data/chunk-*/file-*.parquet")
    return files


def read_tasks(root: Path) -> dict[int, str]:
    path = root / TASKS_PATH
    if not path.is_file():
        raise DatasetError(f"{root}: no {TASKS_PATH}")
    table = pq.read_table(path)  # the pandas index ``task`` is stored as a column
    if "task" not in table.column_names or "task_index" not in table.column_names:
        raise DatasetError(f"{path}: expected the index 'task' and the column 'task_index'")
    return dict(zip(table.column("task_index").to_pylist(), table.column("task").to_pylist(), strict=True))


def read_episodes(root: Path) -> pa.Table:
    files = sorted((root / "meta" / "episodes").glob("*/*.parquet"))
    if not files:
        raise DatasetError(f"{root}: no meta/episodes/chunk-*/file-*.parquet")
    # The per-episode stats/* columns are large and not needed here.
    tables = [pq.read_table(f, columns=[c for c in pq.read_schema(f).names if not c.startswith("stats/")])
              for f in files]
    return pa.concat_tables(tables, promote_options="default")


def source_listing(root: Path) -> str:
    """A fingerprint of the source's file names, sizes and modification times (hashing
    every video would read gigabytes): export refuses a source changed since import."""
    listing = sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                     for p in root.rglob("*") if p.is_file() and p.name != SIDECAR_FILE)
    return fingerprint({"files": listing})


def _png(cell: dict[str, Any] | None, root: Path, where: str) -> bytes:
    """An image cell (struct<bytes, path>) as PNG bytes; other encodings are re-encoded."""
    data = (cell or {}).get("bytes")
    if data is None and (cell or {}).get("path"):
        path = root / cell["path"]  # type: ignore[index]
        if not path.is_file():
            raise DatasetError(f"{where}: image path {cell['path']} not found")  # type: ignore[index]
        data = path.read_bytes()
    if data is None:
        raise DatasetError(f"{where}: empty image cell")
    if data.startswith(PNG_MAGIC):
        return data
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return encode_png(np.asarray(img.convert("RGB")))
    except OSError as exc:
        raise DatasetError(f"{where}: undecodable image: {exc}") from exc


def _require_av(camera: str) -> Any:
    try:
        import av
    except ImportError:
        raise DatasetError(f"LeRobot feature '{camera}' is stored as video; decoding it needs PyAV "
                           "(pip install av), or pick an image feature with camera=<key>") from None
    return av


class _VideoFrames:
    """One camera's frames, decoded one episode at a time (a video file holds many episodes,
    so only the episode's time range is decoded and kept), picked by timestamp."""

    def __init__(self, root: Path, info: dict[str, Any], camera: str, episodes: pa.Table) -> None:
        self.av = _require_av(camera)
        self.root, self.camera = root, camera
        self.template = info.get("video_path") or "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
        prefix = f"videos/{camera}/"
        keys = ("chunk_index", "file_index", "from_timestamp", "to_timestamp")
        if any(prefix + k not in episodes.column_names for k in keys):
            raise DatasetError(f"{root}: meta/episodes lacks {prefix}{{{','.join(keys)}}}")
        self.where = {ep: row for ep, *row in zip(episodes.column("episode_index").to_pylist(),
                                                   *(episodes.column(prefix + k).to_pylist() for k in keys),
                                                   strict=True)}
        self.cache: tuple[int, np.ndarray, list[Any]] | None = None

    def _decode(self, episode: int) -> tuple[int, np.ndarray, list[Any]]:
        chunk, file, start, stop = self.where[episode]
        path = self.root / self.template.format(video_key=self.camera, chunk_index=chunk, file_index=file)
        if not path.is_file():
            raise DatasetError(f"{path}: video file not found (episode {episode})")
        times, images = [], []
        with self.av.open(str(path)) as container:
            stream = container.streams.video[0]
            if start > 0:  # to the key frame at or before the episode's start
                container.seek(int(start / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                t = float(frame.pts * frame.time_base)
                if t >= stop:
                    break
                if t >= start - 1e-6:
                    times.append(t - start)
                    images.append(frame.to_ndarray(format="rgb24"))
        return episode, np.asarray(times), images

    def frame(self, episode: int, timestamp: float, fps: float) -> bytes:
        if self.cache is None or self.cache[0] != episode:
            self.cache = self._decode(episode)
        _, times, images = self.cache
        k = int(np.argmin(np.abs(times - timestamp))) if len(times) else -1
        if k < 0 or abs(times[k] - timestamp) > 0.5 / fps:
            raise DatasetError(f"{self.camera}: no video frame at {timestamp:.3f}s of episode {episode}")
        return encode_png(images[k])


def _action_name(vector: list[float]) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in vector) + ")"


def _convert_file(path: Path, root: Path, info: dict[str, Any], config: LeRobotImportConfig, camera: str,
                  tasks: dict[int, str], video: _VideoFrames | None, keep: set[int] | None) -> pa.Table | None:
    names = pq.read_schema(path).names
    need = ["episode_index", "frame_index", "index", "task_index", "timestamp", config.action_key]
    missing = [c for c in need if c not in names]
    if missing:
        raise DatasetError(f"{path}: missing columns {missing}")
    extras = [c for c in ("next.done", "next.success") if c in names]
    table = pq.read_table(path, columns=need + extras + ([camera] if video is None else []))
    table = table.sort_by([("index", "ascending")])
    episodes = np.asarray(table.column("episode_index").to_numpy(), dtype=np.int64)
    if keep is not None:
        table = table.filter(pa.array(np.isin(episodes, list(keep))))
        episodes = np.asarray(table.column("episode_index").to_numpy(), dtype=np.int64)
    n = table.num_rows
    if n == 0:
        return None
    steps = table.column("frame_index").to_pylist()
    task_index = table.column("task_index").to_pylist()
    unknown = sorted({t for t in task_index if t not in tasks})
    if unknown:
        raise DatasetError(f"{path}: task_index {unknown[:5]} not in {TASKS_PATH}")
    actions = [a if isinstance(a, list) else [a] for a in table.column(config.action_key).to_pylist()]
    last = episode_ends(episodes)
    flags = {c: np.asarray(table.column(c).to_pylist(), dtype=bool) for c in extras}
    # next.success on any frame makes the episode a success.
    success = np.zeros(n, dtype=bool)
    if "next.success" in flags:
        for ep in np.unique(episodes):
            mask = episodes == ep
            success[mask] = flags["next.success"][mask].any()
    ended = flags.get("next.done", flags.get("next.success", np.zeros(n, dtype=bool)))
    terminal = last & ended
    if video is None:
        cells = table.column(camera).to_pylist()
        frames = [_png(c, root, f"{path}: row {i} ({camera})") for i, c in enumerate(cells)]
    else:
        stamps = table.column("timestamp").to_pylist()
        frames = [video.frame(int(e), float(t), float(info["fps"])) for e, t in zip(episodes, stamps, strict=True)]
    columns = {
        "episode_id": [EPISODE_ID.format(int(e)) for e in episodes],
        "step": pa.array(steps, pa.int32()),
        "task_id": [f"task-{t}" for t in task_index],
        "instruction": [tasks[t] for t in task_index],
        "num_subtasks": pa.array(np.zeros(n, np.int32)),
        "env_name": [ENV_NAME] * n,
        "seed": pa.array(np.zeros(n, np.int64)),
        "frame": pa.array(frames, pa.binary()),
        "final_frame": pa.nulls(n, pa.binary()),
        "action": pa.array(np.full(n, -1, np.int32)),
        "action_name": [_action_name(a) for a in actions],
        "expert_action": pa.array(np.full(n, -1, np.int32)),
        "is_random_action": pa.array(np.zeros(n, bool)),
        "terminal": pa.array(terminal),
        "truncated": pa.array(last & ~terminal),
        "subtasks_completed": pa.array(np.zeros(n, np.int32)),
        "success": pa.array(success),
        "action_vector": pa.array(actions, pa.list_(pa.float32())),
    }
    schema = pa.schema([*TRANSITION_SCHEMA, OPTIONAL_SCHEMA.field("action_vector")])
    return pa.table({f.name: columns[f.name] for f in schema}, schema=schema)


def import_lerobot(source: str | Path, out: str | Path | Location, config: LeRobotImportConfig | None = None,
                   on_change: OnChange = "refuse") -> Path | Location:
    """Import the local LeRobot v3 dataset at ``source`` as a trajectory dataset at ``out`` (a
    local path or a storage URI: :mod:`rayrg.storage`)."""
    config = config or LeRobotImportConfig()
    root = local_only(source, "import lerobot SOURCE", LOCAL_REASON).resolve()
    location = resolve(out)
    out = native(location)
    info = read_info(root)
    features = info["features"]
    cameras = [k for k, f in features.items() if f.get("dtype") in ("image", "video")]
    if not cameras:
        raise DatasetError(f"{root / INFO_PATH}: no image or video feature to use as frames")
    camera = config.camera or cameras[0]
    if camera not in cameras:
        raise ConfigError(f"import lerobot: camera {camera!r} is not an image/video feature; have {cameras}")
    if config.action_key not in features:
        raise ConfigError(f"import lerobot: no feature {config.action_key!r}; have {sorted(features)}")
    mode = features[camera]["dtype"]
    if mode == "video":
        _require_av(camera)  # before anything is written
    files, tasks, episodes = data_files(root), read_tasks(root), read_episodes(root)
    listing = source_listing(root)
    claimed = claim(location, "import lerobot", {"source": str(root), "files": listing, "config": config.to_dict()},
                    on_change=on_change)
    if claimed.done:
        return out
    keep = None
    if config.max_episodes:
        keep = set(sorted(episodes.column("episode_index").to_pylist())[:config.max_episodes])
    video = _VideoFrames(root, info, camera, episodes) if mode == "video" else None
    num_episodes = num_rows = 0
    for i, path in enumerate(files):
        table = _convert_file(path, root, info, config, camera, tasks, video, keep)
        if table is None:
            continue
        write_shard(table, location / f"part-{i:05d}.parquet")
        num_rows += table.num_rows
        num_episodes += len(set(table.column("episode_id").to_pylist()))
    if not num_rows:
        raise DatasetError(f"{root}: no frames to import")
    has_success = any("next.success" in pq.read_schema(f).names for f in files)
    missing = {
        "subtasks": "LeRobot records no sub-task annotations (num_subtasks and subtasks_completed are 0)",
        "expert_action": "LeRobot demonstrations carry no separate expert action (expert_action is -1)",
        "is_random_action": "LeRobot does not mark exploration-noise actions (is_random_action is False)",
    }
    if not has_success:
        missing["success"] = "the dataset has no next.success feature (success is False)"
    DatasetMetadata(
        generator="rayrg.data.lerobot:import", env_name=ENV_NAME, num_episodes=num_episodes,
        num_transitions=num_rows, fingerprint=claimed.fingerprint,
        extra={META_KEY: {"source": str(root), "source_files": listing,
                          "codebase_version": info.get("codebase_version"), "fps": info.get("fps"),
                          "robot_type": info.get("robot_type"), "mode": mode, "camera": camera,
                          "action_key": config.action_key, "episode_id": EPISODE_ID,
                          "mapping": {"episode_id": "episode_index", "step": "frame_index",
                                      "instruction": "task_index -> meta/tasks.parquet",
                                      "frame": camera, "action_vector": config.action_key,
                                      "success": "next.success", "terminal": "next.done"}},
               MISSING_TRUTH_KEY: missing},
    ).write(location)
    claimed.finish(dataset=str(out))
    log.info("imported %d LeRobot episodes (%d frames) from %s into %s", num_episodes, num_rows, root, out)
    return out


# -- export ---------------------------------------------------------------------------------
def _progress(values: np.ndarray, episodes: np.ndarray) -> np.ndarray:
    """Per-frame progress in [0, 1] from rewards: the episode's cumulative reward (negative
    and missing rewards count 0) over its total; 0 where the total is 0, NaN where the
    reward is missing (RA-BC gives such frames its fallback weight)."""
    out = np.zeros(len(values), dtype=np.float32)
    clean = np.where(np.isnan(values), 0.0, np.maximum(values, 0.0))
    for ep in np.unique(episodes):
        idx = np.nonzero(episodes == ep)[0]
        total = clean[idx].sum()
        if total > 0:
            out[idx] = np.cumsum(clean[idx]) / total
    out[np.isnan(values)] = np.nan
    return out


def _stats(values: np.ndarray) -> dict[str, Any]:
    v = values[~np.isnan(values)].astype(np.float64)
    if not len(v):
        v = np.zeros(1)
    q = {f"q{p:02d}": [float(np.quantile(v, p / 100))] for p in (1, 10, 50, 90, 99)}
    return {"min": [float(v.min())], "max": [float(v.max())], "mean": [float(v.mean())],
            "std": [float(v.std())], "count": [int((~np.isnan(values)).sum())], **q}


def _variant(column: str) -> str:
    return column.removeprefix(REWARD_PREFIX)


def export_lerobot(dataset: str | Path | Location, out: str | Path, reward_column: str | None = None,
                   config: LeRobotExportConfig | None = None, on_change: OnChange = "refuse",
                   allow_unfinished: bool = False) -> Path:
    """Write the LeRobot source of labelled ``dataset`` (a local path or a storage URI) with
    its rewards to ``out``, a local LeRobot dataset folder (a URI is refused in one line)."""
    dense_column = (config or LeRobotExportConfig()).dense_column
    out = local_only(out, "export lerobot --out", LOCAL_REASON, output=True)
    dataset = native(resolve(dataset))
    require_finished(dataset, "export lerobot", allow=allow_unfinished)
    data = Dataset.open(dataset)
    meta = data.metadata.extra.get(META_KEY)
    if not meta:
        raise ConfigError(f"export lerobot: {dataset} was not imported from LeRobot (no '{META_KEY}' in its "
                          "metadata); import it with `rayrg import lerobot`, label it, then export")
    rewards = data.reward_columns()
    if not rewards:
        raise ConfigError(f"export lerobot: {dataset} has no reward_* columns; label it first (rayrg label)")

    def reward_of(name: str | None, what: str) -> str | None:
        if name is None:
            return None
        col = name if name.startswith(REWARD_PREFIX) else REWARD_PREFIX + name
        if col not in rewards:
            raise ConfigError(f"export lerobot: {what} {name!r} is not a reward column of {dataset}; have {rewards}")
        return col

    chosen = reward_of(reward_column, "--reward")
    if chosen is None:
        if len(rewards) > 1:
            raise ConfigError(f"export lerobot: {dataset} has several reward columns {rewards}; pick the "
                              f"one for {CHOSEN_FEATURE} with --reward")
        chosen = rewards[0]
    dense = reward_of(dense_column, "dense_column")
    root = Path(meta["source"])
    if not (root / INFO_PATH).is_file():
        raise DatasetError(f"export lerobot: the LeRobot source {root} (recorded at import) is gone")
    if source_listing(root) != meta["source_files"]:
        raise DatasetError(f"export lerobot: the LeRobot source {root} changed since {dataset} was imported; "
                           "import and label it again")
    if out.resolve() == root or root in out.resolve().parents:
        raise ConfigError(f"export lerobot: --out {out} must lie outside the source {root}")
    info = read_info(root)
    names = {c: CHOSEN_FEATURE if c == chosen else OTHER_FEATURE.format(_variant(c)) for c in rewards}
    clash = [f for f in names.values() if f in info["features"]]
    if clash:
        raise DatasetError(f"export lerobot: {root} already has features {clash}; rayrg does not overwrite them")
    claimed = claim(out, "export lerobot", {"dataset": dataset_fingerprint(dataset), "reward": chosen,
                                            "dense": dense, "source": meta["source_files"]}, on_change=on_change)
    if claimed.done:
        return out

    # Rewards by LeRobot (episode_index, frame_index); frames the labelled dataset lacks get NaN.
    table = data.read(["episode_id", "step", *rewards])
    lookup: dict[tuple[int, int], int] = {}
    ids = table.column("episode_id").to_pylist()
    steps = table.column("step").to_pylist()
    values = {c: np.asarray(table.column(c).to_numpy(zero_copy_only=False), dtype=np.float32) for c in rewards}
    parse: dict[str, int] = {}
    for i, (eid, step) in enumerate(zip(ids, steps, strict=True)):
        if eid not in parse:
            prefix = meta["episode_id"].split("{")[0]
            try:
                parse[eid] = int(eid.removeprefix(prefix))
            except ValueError:
                raise DatasetError(f"{dataset}: episode_id {eid!r} is not a LeRobot episode") from None
        lookup[(parse[eid], int(step))] = i

    for path in root.rglob("*"):  # the originals, byte for byte
        rel = path.relative_to(root)
        if path.is_file() and not (rel.parts[0] == "data" and path.suffix == ".parquet") \
                and str(rel) not in (INFO_PATH, STATS_PATH, SIDECAR_FILE):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out / rel)

    sidecar: dict[str, list[np.ndarray]] = {"index": [], "episode_index": [], "frame_index": [],
                                            "progress_sparse": [], **({"progress_dense": []} if dense else {})}
    all_values: dict[str, list[np.ndarray]] = {c: [] for c in rewards}
    for path in data_files(root):
        source = pq.read_table(path)
        eps = source.column("episode_index").to_numpy()
        frames = source.column("frame_index").to_numpy()
        rows = np.array([lookup.get((int(e), int(f)), -1) for e, f in zip(eps, frames, strict=True)], np.int64)
        hf = json.loads((source.schema.metadata or {}).get(b"huggingface", b"{}") or b"{}")
        hf_features = hf.get("info", {}).get("features")
        for column in rewards:
            col = np.where(rows >= 0, values[column][np.maximum(rows, 0)], np.float32("nan")).astype(np.float32)
            all_values[column].append(col)
            source = source.append_column(pa.field(names[column], pa.float32()), pa.array(col, pa.float32()))
            if hf_features is not None:
                hf_features[names[column]] = {"dtype": "float32", "_type": "Value"}
        metadata = dict(source.schema.metadata or {})
        if hf_features is not None:
            metadata[b"huggingface"] = json.dumps(hf).encode()
        target = out / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(source.replace_schema_metadata(metadata), target)
        chosen_values = all_values[chosen][-1]
        sidecar["index"].append(source.column("index").to_numpy().astype(np.int64))
        sidecar["episode_index"].append(eps.astype(np.int64))
        sidecar["frame_index"].append(frames.astype(np.int64))
        sidecar["progress_sparse"].append(_progress(chosen_values, eps))
        if dense:
            sidecar["progress_dense"].append(_progress(all_values[dense][-1], eps))

    info["features"].update({names[c]: {"dtype": "float32", "shape": [1], "names": None} for c in rewards})
    # LeRobot reads info.json into a dict and ignores keys it does not know; a LeRobot dataset
    # has no id of its own (the caller's repo_id names it), so the record suggests one.
    info[EXPORT_KEY] = {**export_record(data, chosen, f"rayrg/{root.name}-{_variant(chosen)}"),
                        "features": names}
    (out / INFO_PATH).write_text(json.dumps(info, indent=4))
    if (root / STATS_PATH).is_file():
        stats = json.loads((root / STATS_PATH).read_text())
        stats.update({names[c]: _stats(np.concatenate(all_values[c])) for c in rewards})
        (out / STATS_PATH).write_text(json.dumps(stats, indent=4))
    side = pa.table({k: np.concatenate(v) for k, v in sidecar.items()})
    side = side.sort_by([("index", "ascending")]).replace_schema_metadata(
        {b"reward_model_path": f"rayrg:{chosen}".encode()})
    pq.write_table(side, out / SIDECAR_FILE)
    (out / "rayrg_export.json").write_text(json.dumps({
        "labelled_dataset": str(dataset), "source": str(root), "features": names,
        "progress_sparse": chosen, "progress_dense": dense,
        "provenance": {names[c]: data.provenance.get(c, {}) for c in rewards}}, indent=2, default=str))
    claimed.finish(dataset=str(out), features=names)
    log.info("exported %s with %s to %s", root, names, out)
    return out


class _Format:
    """LeRobot as a dataset format (:mod:`rayrg.data.formats`)."""

    name = "lerobot"
    import_options = LeRobotImportConfig
    export_options = LeRobotExportConfig
    makes_eval_tasks = False

    def import_(self, source: str | Path, out: str | Path | Location, options: LeRobotImportConfig | None = None, *,
                on_change: OnChange = "refuse", address: str | None = None) -> Any:
        from rayrg.data.formats import Imported

        return Imported(import_lerobot(source, out, options, on_change=on_change))

    def export(self, dataset: str | Path | Location, out: str | Path, reward_column: str | None = None,
               options: LeRobotExportConfig | None = None, *, on_change: OnChange = "refuse",
               allow_unfinished: bool = False) -> Path:
        return export_lerobot(dataset, out, reward_column, options, on_change=on_change,
                              allow_unfinished=allow_unfinished)

    @staticmethod
    def source_problem(source: str | Path) -> str | None:
        try:
            info = local_only(source, "the LeRobot source", LOCAL_REASON) / INFO_PATH
        except StorageError as exc:
            return str(exc)
        return None if info.is_file() else f"{source} is not a LeRobot v3 dataset (no {INFO_PATH})"

    @staticmethod
    def load_hint(out: str | Path) -> str:
        """How to open the export with LeRobot's reader (an absolute root: any working directory)."""
        path = Path(out).resolve()
        repo_id = json.loads((path / INFO_PATH).read_text())[EXPORT_KEY]["dataset_id"]
        return f"{path} (load with LeRobotDataset({repo_id!r}, root={str(path)!r}))"


LEROBOT = _Format()
