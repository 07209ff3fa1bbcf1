"""ALFRED trajectories -> the rayrg trajectory dataset (``rayrg.data.schema``).

ALFRED (Shridhar et al., 2020) stores one expert demonstration per *trial*::

    <root>/<split>/<task>/<trial>/traj_data.json
    <root>/<split>/<task>/<trial>/high_res_images/000000000.png ...   (or raw_images/*.jpg)

``traj_data.json`` holds ``scene`` (floor plan, ``init_action``, object poses/toggles),
``plan.high_pddl`` (the sub-goals; the last one is a ``NoOp``), ``plan.low_actions`` (each
with ``discrete_action``, ``api_action`` and the ``high_idx`` of its sub-goal), ``images``
(``image_name``, ``low_idx``, ``high_idx`` per saved frame) and ``turk_annotations.anns``
(per annotator: ``task_desc`` and one ``high_descs`` entry per sub-goal).

Mapping to rows (one per low-level action ``t``):

* ``frame`` — the *first* image saved for ``low_idx == t`` (ALFRED saves the view before
  each action, then extra frames during smooth navigation); ``final_frame`` on the last
  row is the last image of the trial (the state after the last action). This is the rule
  ALFRED's own feature extraction uses. Without an ``images`` list the folder must hold
  exactly one image per action plus one. JPEGs are re-encoded as PNG.
* ``action`` — the id in :data:`rayrg.envs.thor_config.ACTION_NAMES` (ALFRED's 12
  low-level actions); ``action_name`` adds the target's object type for interactions
  (``PutObject(CounterTop)``); ``expert_action`` = ``action`` (the data *is* the expert).
* ``subtasks_completed`` — sub-goals (non-``NoOp`` ``high_pddl`` entries) whose last low
  action is at or before ``t``; it reaches ``num_subtasks`` on the last row.
* ``terminal`` on the last row, ``success`` everywhere (ALFRED keeps successful demos only).
* ``instruction`` — ``task_desc`` or the concatenated ``high_descs`` (config); one episode
  per annotation with ``annotations: all``, the first annotation only by default.

Broken trials (no ``traj_data.json``, bad JSON, no plan or annotations, unknown actions,
missing or unreadable images, action/image count mismatch) are skipped and listed with
their reason in ``import_report.json`` and the dataset metadata; they never stop an import.
"""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from rayrg.config import StageConfig
from rayrg.contracts.versions import read_json_object
from rayrg.data.schema import DatasetError, DatasetMetadata, encode_png, write_shard
from rayrg.envs.base import EvalTask
from rayrg.envs.thor_config import ACTION_NAMES, ENV_NAME, INTERACT_ACTIONS, action_id, object_type
from rayrg.provenance import OnChange, claim, fingerprint
from rayrg.storage import (
    Location,
    StorageError,
    assert_shared,
    claim_shared,
    local_only,
    native,
    release_shared,
    resolve,
)

log = logging.getLogger(__name__)

TRAJ_FILE = "traj_data.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
REPORT_FILE = "import_report.json"
# Why the ALFRED root is a local folder (a storage URI is refused): every trial's JSON and
# images are opened as files, by the driver and by the shard tasks.
LOCAL_REASON = "the ALFRED trials (traj_data.json and images) are read as local files"


class AlfredImportOptions(StageConfig):
    """``rayrg import alfred ROOT``'s options: which split, and how it becomes episodes."""

    split: str = Field("train", description="Split folder to import (train, valid_seen, ...).")
    instruction: Literal["task_desc", "high_descs"] = Field(
        "task_desc", description="task_desc: the one-sentence goal; high_descs: the step "
        "descriptions joined in order.")
    annotations: Literal["first", "all"] = Field(
        "first", description="One episode per trial (first annotation) or one per annotation.")
    image_dirs: list[str] = Field(
        default_factory=lambda: ["high_res_images", "raw_images"],
        description="Image folders to look for in a trial, in order of preference.")
    frame_size: int | None = Field(None, ge=16, description="Resize frames to this square size (None: keep, 300x300 in ALFRED).")
    max_trials: int | None = Field(None, ge=1, description="Import at most this many trials (sorted order).")
    trials_per_shard: int = Field(16, ge=1, description="Trials per Ray task / Parquet shard.")
    use_ray: bool = Field(True, description="Convert shards in parallel Ray tasks (False: in this process).")
    eval_split: str | None = Field(
        None, description="Split whose trials become evaluation tasks (e.g. valid_seen); None: the imported split.")
    eval_max_tasks: int | None = Field(
        100, ge=1, description="At most this many test tasks (SPRINT evaluates 100); None: all.")
    val_fraction: float = Field(
        0.2, ge=0.0, lt=1.0,
        description="Share of eval_split's trials that become validation tasks (val_tasks.json, what "
                    "`rayrg tune` ranks on) instead of test tasks; by a stable hash of the trial, so all "
                    "annotations of a trial land in one set. At most eval_max_tasks of each.")


class AlfredImportConfig(AlfredImportOptions):
    """The options plus the ALFRED root: everything one import is keyed to."""

    root: str = Field(..., description="ALFRED data root holding <split>/<task>/<trial>/.")

    @classmethod
    def of(cls, root: str | Path, options: AlfredImportOptions) -> AlfredImportConfig:
        return cls.model_validate({**options.model_dump(), "root": str(root)})

    def options(self) -> AlfredImportOptions:
        return AlfredImportOptions.model_validate(self.model_dump(exclude={"root"}))

    @property
    def split_dir(self) -> Path:
        return Path(self.root) / self.split


class BrokenTrial(Exception):
    """A trial that cannot be imported; the message is the reason shown in the report."""


# What a traj_data.json of the wrong shape raises while it is read (a list where a dict
# belongs, a missing key): reported as a broken trial like the named failures.
MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError)


def broken_reason(exc: Exception) -> str:
    if isinstance(exc, BrokenTrial):
        return str(exc)
    return f"malformed {TRAJ_FILE}: {type(exc).__name__}: {exc}"


# -- layout ---------------------------------------------------------------------------------
def find_trials(root: str | Path, split: str) -> list[Path]:
    """Trial folders ``<root>/<split>/<task>/<trial>`` (with or without traj_data.json)."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise DatasetError(f"{split_dir}: ALFRED split folder not found (expected <root>/<split>/<task>/<trial>/{TRAJ_FILE})")
    trials = sorted(p for task in split_dir.iterdir() if task.is_dir()
                    for p in task.iterdir() if p.is_dir())
    if not trials:
        raise DatasetError(f"{split_dir}: no <task>/<trial> folders")
    return trials


def load_traj(trial: Path) -> dict[str, Any]:
    path = trial / TRAJ_FILE
    if not path.is_file():
        raise BrokenTrial(f"no {TRAJ_FILE}")
    return read_json_object(path, "trial record", BrokenTrial, shown=TRAJ_FILE)


# -- plan, annotations ------------------------------------------------------------------------
def subgoals_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The sub-goals (``plan.high_pddl`` without the closing ``NoOp``), compacted for the env:
    ``{"action", "args", "planner_action"}`` in order."""
    try:
        high = data["plan"]["high_pddl"]
    except (KeyError, TypeError) as exc:
        raise BrokenTrial("no plan.high_pddl (test splits have no plan)") from exc
    subgoals = []
    for entry in high:
        discrete = entry.get("discrete_action", {}) if isinstance(entry, dict) else {}
        name = discrete.get("action")
        if name is None:
            raise BrokenTrial("plan.high_pddl entry without discrete_action.action")
        if name == "NoOp":
            continue
        subgoals.append({"action": name, "args": list(discrete.get("args", [])),
                         "planner_action": entry.get("planner_action", {})})
    if not subgoals:
        raise BrokenTrial("plan.high_pddl has no sub-goals")
    return subgoals


def low_actions_of(data: dict[str, Any], num_subtasks: int) -> list[tuple[int, str, int]]:
    """``(action id, action_name, high_idx)`` per low-level action."""
    try:
        low = data["plan"]["low_actions"]
    except (KeyError, TypeError) as exc:
        raise BrokenTrial("no plan.low_actions") from exc
    if not low:
        raise BrokenTrial("plan.low_actions is empty")
    out = []
    previous = 0
    for k, entry in enumerate(low):
        discrete = entry.get("discrete_action", {})
        api = entry.get("api_action", {})
        name = discrete.get("action") or api.get("action")
        try:
            aid = action_id(name)
        except KeyError:
            raise BrokenTrial(f"low action {k}: unknown action {name!r} (vocabulary: {', '.join(ACTION_NAMES)})") from None
        high_idx = entry.get("high_idx")
        if not isinstance(high_idx, int) or not 0 <= high_idx < num_subtasks or high_idx < previous:
            raise BrokenTrial(f"low action {k}: high_idx {high_idx!r} is not a sub-goal index in "
                              f"order (0..{num_subtasks - 1}, non-decreasing)")
        previous = high_idx
        label = ACTION_NAMES[aid]
        if label in INTERACT_ACTIONS:
            target = api.get("receptacleObjectId") if label == "PutObject" else None
            target = target or api.get("objectId")
            if target:
                label = f"{label}({object_type(target)})"
        out.append((aid, label, high_idx))
    return out


def annotations_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    anns = (data.get("turk_annotations") or {}).get("anns") or []
    anns = [a for a in anns if isinstance(a, dict) and (a.get("task_desc") or a.get("high_descs"))]
    if not anns:
        raise BrokenTrial("no language annotations (turk_annotations.anns)")
    return anns


def _sentence(text: str) -> str:
    text = " ".join(str(text).split())
    return text if not text or text[-1] in ".!?" else text + "."


def instruction_text(annotation: dict[str, Any], mode: str) -> str:
    if mode == "high_descs" and annotation.get("high_descs"):
        return " ".join(_sentence(d) for d in annotation["high_descs"] if str(d).strip())
    text = annotation.get("task_desc") or " ".join(annotation.get("high_descs") or [])
    return _sentence(text)


def subtask_progress(high_idxs: list[int], num_subtasks: int) -> list[int]:
    """Sub-goals completed after each low action: a sub-goal is complete once its last low
    action is done (a sub-goal without low actions completes with the one before it)."""
    end = [-1] * num_subtasks
    for t, h in enumerate(high_idxs):
        end[h] = t
    for h in range(1, num_subtasks):
        end[h] = max(end[h], end[h - 1])
    return [sum(1 for e in end if e <= t) for t in range(len(high_idxs))]


# -- images -----------------------------------------------------------------------------------
def _resolve_image(folder: Path, name: str) -> Path | None:
    path = folder / name
    if path.is_file():
        return path
    stem = Path(name).stem
    for suffix in IMAGE_SUFFIXES:  # ALFRED lists *.png names; raw_images hold *.jpg
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def frame_paths(trial: Path, data: dict[str, Any], num_actions: int,
                image_dirs: list[str]) -> tuple[list[Path], Path]:
    """(image before each low action, image after the last action)."""
    folder = next((trial / d for d in image_dirs if (trial / d).is_dir()), None)
    if folder is None:
        raise BrokenTrial(f"no image folder ({' or '.join(image_dirs)})")
    images = data.get("images") or []
    if images:
        first: dict[int, str] = {}
        for entry in images:
            first.setdefault(int(entry.get("low_idx", -1)), entry["image_name"])
        missing = [k for k in range(num_actions) if k not in first]
        if missing:
            raise BrokenTrial(f"action/image count mismatch: {num_actions} actions, {len(images)} "
                              f"images, none for low action(s) {missing[:5]}")
        names = [first[k] for k in range(num_actions)] + [images[-1]["image_name"]]
        paths = []
        for name in names:
            path = _resolve_image(folder, name)
            if path is None:
                raise BrokenTrial(f"missing image {folder.name}/{name}")
            paths.append(path)
    else:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if len(paths) != num_actions + 1:
            raise BrokenTrial(f"action/image count mismatch: {num_actions} actions need "
                              f"{num_actions + 1} images, {folder.name}/ has {len(paths)}")
    return paths[:-1], paths[-1]


def load_frame(path: Path, size: int | None) -> bytes:
    """An image file as PNG bytes (RGB, optionally resized); BrokenTrial if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        raw = path.read_bytes()
        with Image.open(io.BytesIO(raw)) as img:
            img.load()
            fmt = img.format
            rgb = img.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise BrokenTrial(f"unreadable image {path.parent.name}/{path.name}: {exc}") from exc
    if size is not None and rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.BILINEAR)
    elif fmt == "PNG" and rgb.mode == "RGB" and size is None:
        return raw
    return encode_png(np.asarray(rgb))


# -- trials -> rows / tasks -------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def trial_key(trial: Path) -> str:
    return f"{trial.parent.name}/{trial.name}"


def trial_rows(trial: Path, split: str, config: AlfredImportConfig) -> list[dict[str, Any]]:
    """All rows of one trial (one episode per selected annotation); BrokenTrial on failure."""
    data = load_traj(trial)
    subgoals = subgoals_of(data)
    num_subtasks = len(subgoals)
    actions = low_actions_of(data, num_subtasks)
    anns = annotations_of(data)
    if config.annotations == "first":
        anns = anns[:1]
    before, after = frame_paths(trial, data, len(actions), config.image_dirs)
    frames = [load_frame(p, config.frame_size) for p in before]
    final = load_frame(after, config.frame_size)
    progress = subtask_progress([h for _, _, h in actions], num_subtasks)
    seed = int((data.get("scene") or {}).get("random_seed") or 0)
    task_id = trial_key(trial)
    rows = []
    for a, ann in enumerate(anns):
        instruction = instruction_text(ann, config.instruction)
        episode_id = f"{ENV_NAME}-{_slug(split)}-{_slug(trial.parent.name)}-{_slug(trial.name)}-a{a}"
        last = len(actions) - 1
        for t, (aid, name, _) in enumerate(actions):
            rows.append({
                "episode_id": episode_id, "step": t, "task_id": task_id,
                "instruction": instruction, "num_subtasks": num_subtasks, "env_name": ENV_NAME,
                "seed": seed, "frame": frames[t], "final_frame": final if t == last else None,
                "action": aid, "action_name": name, "expert_action": aid,
                "is_random_action": False, "terminal": t == last, "truncated": False,
                "subtasks_completed": progress[t], "success": True,
            })
    return rows


def trial_eval_tasks(trial: Path, config: AlfredImportConfig) -> list[EvalTask]:
    """Evaluation tasks of one trial (needs traj_data.json only, no images)."""
    data = load_traj(trial)
    subgoals = subgoals_of(data)
    actions = low_actions_of(data, len(subgoals))
    anns = annotations_of(data)
    if config.annotations == "first":
        anns = anns[:1]
    scene = data.get("scene") or {}
    if not scene.get("floor_plan") and scene.get("scene_num") is None:
        raise BrokenTrial("scene has neither floor_plan nor scene_num")
    floor_plan = scene.get("floor_plan") or f"FloorPlan{scene['scene_num']}"
    extra = {
        "scene": {"floor_plan": floor_plan, "init_action": scene.get("init_action"),
                  "object_poses": scene.get("object_poses") or [],
                  "object_toggles": scene.get("object_toggles") or [],
                  "dirty_and_empty": bool(scene.get("dirty_and_empty", False))},
        "subgoals": subgoals, "task_type": data.get("task_type"),
        "pddl_params": data.get("pddl_params") or {}, "trial": trial_key(trial),
    }
    return [EvalTask(task_id=f"{trial_key(trial)}#a{a}", env_name=ENV_NAME,
                     instruction=instruction_text(ann, config.instruction),
                     num_subtasks=len(subgoals), seed=int(scene.get("random_seed") or 0),
                     expert_steps=len(actions), extra=extra)
            for a, ann in enumerate(anns)]


def import_shard(trials: list[str], config_dict: dict[str, Any], path: str | Location,
                 shared: tuple[Location, str] | None = None) -> dict[str, Any]:
    """Convert ``trials`` into one shard (a local path or a storage location); returns counts
    and the broken trials with reasons. ``shared`` = (output, the driver's token): this node
    must see the driver's marker there before any work (:func:`rayrg.storage.assert_shared`)."""
    if shared is not None:
        assert_shared(*shared)
    config = AlfredImportConfig.from_dict(config_dict)
    rows: list[dict[str, Any]] = []
    stats: dict[str, Any] = {"trials": 0, "episodes": 0, "transitions": 0, "broken": []}
    for trial in map(Path, trials):
        try:
            episode = trial_rows(trial, config.split, config)
        except (BrokenTrial, *MALFORMED) as exc:
            stats["broken"].append({"trial": trial_key(trial), "reason": broken_reason(exc)})
            continue
        rows.extend(episode)
        stats["trials"] += 1
        stats["episodes"] += len({r["episode_id"] for r in episode})
        stats["transitions"] += len(episode)
    if rows:
        write_shard(rows, path)
    return stats


def _log_broken(broken: list[dict[str, str]], what: str) -> None:
    if broken:
        log.warning("skipped %d broken ALFRED trial(s) while %s:\n%s", len(broken), what,
                    "\n".join(f"  {b['trial']}: {b['reason']}" for b in broken[:20])
                    + (f"\n  ... {len(broken) - 20} more" if len(broken) > 20 else ""))


def is_validation_trial(key: str, fraction: float) -> bool:
    """Whether trial ``key`` goes to the validation set: a stable hash, so adding trials or
    importing again never moves a trial between validation and test."""
    import hashlib

    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") / 2.0 ** 64 < fraction


def build_task_sets(config: AlfredImportConfig, split: str | None = None
                    ) -> tuple[list[EvalTask], list[EvalTask], list[dict[str, str]]]:
    """``(validation, test, broken)`` tasks of the eval split's trials (:func:`is_validation_trial`).

    A validation task that is the same task as a test task by content (environment, mission,
    seed: :func:`rayrg.contracts.tasks.task_key`) is dropped from validation.
    """
    from rayrg.contracts.tasks import task_key

    split = split or config.eval_split or config.split
    cap = config.eval_max_tasks
    sets: dict[bool, list[EvalTask]] = {True: [], False: []}
    broken: list[dict[str, str]] = []
    for trial in find_trials(config.root, split):
        key = trial_key(trial)
        chosen = sets[is_validation_trial(key, config.val_fraction)]
        if cap and len(chosen) >= cap:
            if all(len(s) >= cap for s in sets.values()) or not config.val_fraction:
                break
            continue
        try:
            chosen.extend(trial_eval_tasks(trial, config))
        except (BrokenTrial, *MALFORMED) as exc:
            broken.append({"trial": key, "reason": broken_reason(exc)})
    validation, test = sets[True][:cap] if cap else sets[True], sets[False][:cap] if cap else sets[False]
    test_keys = {task_key(t) for t in test}
    return [t for t in validation if task_key(t) not in test_keys], test, broken


def build_eval_tasks(config: AlfredImportConfig, split: str | None = None) -> tuple[list[EvalTask], list[dict[str, str]]]:
    """The test tasks and the broken trials (:func:`build_task_sets` without validation)."""
    _, test, broken = build_task_sets(config, split)
    return test, broken


def import_alfred(config: AlfredImportConfig, out: str | Path | Location, address: str | None = None,
                  progress: bool = True, on_change: OnChange = "refuse") -> Path | Location:
    """Import ``config.split`` under ``out`` (a local path or a storage URI; the ALFRED root
    ``config.root`` is a local folder)::

        trajectories/        the trajectory dataset (rows as in the module docstring)
        eval_tasks.json      test EvalTasks (of ``eval_split``, default the imported split)
        val_tasks.json       validation EvalTasks: ``val_fraction`` of those trials, disjoint
                             from the test tasks (none written when no trial falls to it)
        import_report.json   counts and every skipped trial with its reason
        alfred_import.yaml   this config

    Shards already written by an interrupted run are kept (resume). ``out`` is keyed to the
    config and to the trial files' names, sizes and modification times (hashing every
    ALFRED JSON would read gigabytes): an import of other inputs is refused or redone.
    """
    from rayrg.contracts.tasks import TASKS_FILE, VAL_TASKS_FILE, write_task_sets

    root = local_only(config.root, "import alfred ROOT", LOCAL_REASON)
    location = resolve(out)
    out = native(location)
    trials = [str(t) for t in find_trials(root, config.split)]
    if config.max_trials:
        trials = trials[:config.max_trials]
    listing = [(str(Path(t).relative_to(config.root)), p.stat().st_size, p.stat().st_mtime_ns)
               for t in trials for p in [Path(t) / TRAJ_FILE] if p.exists()]
    claimed = claim(location, "alfred-import", {"config": config.to_dict(), "trials": fingerprint({"files": listing})},
                    on_change=on_change)
    if claimed.done:
        return out
    data_dir = location / "trajectories"
    if data_dir.is_local:
        data_dir.mkdirs()
    config.to_yaml(location / "alfred_import.yaml")
    chunks = [trials[i:i + config.trials_per_shard] for i in range(0, len(trials), config.trials_per_shard)]
    existing = {child.name for child in data_dir.ls()}
    todo = []
    for i, chunk in enumerate(chunks):
        path, stats_path = data_dir / f"part-{i:05d}.parquet", data_dir / f".part-{i:05d}.stats.json"
        if stats_path.name not in existing:
            todo.append((chunk, path, stats_path))

    from tqdm import tqdm

    bar = tqdm(total=len(chunks), initial=len(chunks) - len(todo), desc=f"alfred {config.split}",
               unit="shard", disable=not progress)
    if config.use_ray and todo:
        import ray

        from rayrg.runtime import cancel_pending, init_ray

        init_ray(address)
        task = ray.remote(num_cpus=0.5)(import_shard)
        # A local output must be the one every writing task sees (a shared mount): the tasks
        # check the driver's marker before writing; a URI names the same objects everywhere.
        token = claim_shared(data_dir) if data_dir.is_local else None
        shared = (data_dir, token) if token is not None else None
        try:
            pending = {task.remote(chunk, config.to_dict(), path, shared): stats_path
                       for chunk, path, stats_path in todo}
            remaining = list(pending)
            try:
                while remaining:
                    done, remaining = ray.wait(remaining, num_returns=1)
                    pending[done[0]].write_text(json.dumps(ray.get(done[0])))
                    bar.update(1)
            except KeyboardInterrupt:
                cancel_pending(remaining)  # before the marker goes (finally)
                raise
        finally:
            if token is not None:
                release_shared(data_dir, token)
    else:
        for chunk, path, stats_path in todo:
            stats_path.write_text(json.dumps(import_shard(chunk, config.to_dict(), path)))
            bar.update(1)
    bar.close()

    totals: dict[str, Any] = {"trials": 0, "episodes": 0, "transitions": 0, "broken": []}
    for stats_path in data_dir.ls():
        if not (stats_path.name.startswith(".part-") and stats_path.name.endswith(".stats.json")):
            continue
        stats = json.loads(stats_path.read_text())
        for key in ("trials", "episodes", "transitions"):
            totals[key] += stats[key]
        totals["broken"].extend(stats["broken"])
    _log_broken(totals["broken"], f"importing {config.split}")
    if not totals["episodes"]:
        raise DatasetError(f"{config.split_dir}: no importable trial ({len(totals['broken'])} broken; "
                           f"first reason: {totals['broken'][0]['reason'] if totals['broken'] else 'none'})")

    val_tasks, tasks, broken_eval = build_task_sets(config)
    _log_broken(broken_eval, "building evaluation tasks")
    write_task_sets(out, val_tasks, tasks)
    report = {"split": config.split, "eval_split": config.eval_split or config.split,
              "trials_found": len(trials), "trials_imported": totals["trials"],
              "episodes": totals["episodes"], "transitions": totals["transitions"],
              "broken": totals["broken"], "eval_tasks": len(tasks), "val_tasks": len(val_tasks),
              "eval_broken": broken_eval}
    (location / REPORT_FILE).write_text(json.dumps(report, indent=1))
    DatasetMetadata(
        generator="rayrg.data.alfred:import", env_name=ENV_NAME, fingerprint=claimed.fingerprint,
        num_episodes=totals["episodes"], num_transitions=totals["transitions"],
        seeds=[], noise=0.0,
        extra={"config": config.to_dict(), "action_names": list(ACTION_NAMES),
               "trials_found": len(trials), "broken_trials": len(totals["broken"]),
               "broken": totals["broken"][:100], "eval_tasks": len(tasks)},
    ).write(data_dir)
    log.info("imported %d ALFRED trials (%d episodes, %d transitions, %d broken) into %s",
             totals["trials"], totals["episodes"], totals["transitions"], len(totals["broken"]), data_dir)
    claimed.finish(trajectories=str(out / "trajectories"), eval_tasks=str(out / TASKS_FILE),
                   val_tasks=str(out / VAL_TASKS_FILE) if val_tasks else None)
    return out


class AlfredFormat:
    """ALFRED as a dataset format (:mod:`rayrg.data.formats`): ``rayrg import alfred ROOT``."""

    name = "alfred"
    import_options = AlfredImportOptions
    export_options = None  # ALFRED's demonstrations carry no reward field to write back
    makes_eval_tasks = True

    def import_(self, source: str | Path, out: str | Path, options: AlfredImportOptions | None = None, *,
                on_change: OnChange = "refuse", address: str | None = None, progress: bool = True) -> Any:
        from rayrg.data.formats import Imported

        config = AlfredImportConfig.of(source, options or AlfredImportOptions())
        out = import_alfred(config, out, address=address, progress=progress, on_change=on_change)
        report = json.loads((out / REPORT_FILE).read_text())
        return Imported(out / "trajectories", out / "eval_tasks.json", [
            f"dataset: {out / 'trajectories'} ({report['episodes']} episodes, {report['transitions']} transitions)",
            f"test tasks: {out / 'eval_tasks.json'} ({report['eval_tasks']})",
            f"validation tasks: {out / 'val_tasks.json'} ({report.get('val_tasks', 0)})",
            f"skipped trials: {len(report['broken'])} (reasons in {out / REPORT_FILE})"])

    @staticmethod
    def source_problem(source: str | Path) -> str | None:
        try:
            root = local_only(source, "the ALFRED root", LOCAL_REASON)
        except StorageError as exc:
            return str(exc)
        return None if root.is_dir() else f"{source} is not a directory (the ALFRED data root)"


ALFRED = AlfredFormat()
