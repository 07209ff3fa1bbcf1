"""Ray Data stages of the similarity labellers: actors that load a model once and score batches.

::

    shards ─read_parquet─► map_batches(FrameScorer)  ─► one score per observation
                                                       └─► transition t gets obs t+1 (or t)
    shards ─from_items(paths)─► map_batches(read_episode_videos) ─► map_batches(VideoScorer)
                                                       └─► one score per episode, on its last step

``FrameScorer`` serves a :class:`~rayrg.rewards.similarity.method.FrameMethod`,
``VideoScorer`` an :class:`~rayrg.rewards.similarity.method.EpisodeMethod`; the method
object (pickled into the actors) loads the model, scores, and names the columns and
provenance, so nothing here depends on which method runs.

Actors run on the GPU when the cluster has one (``num_gpus`` None: 1 per actor) and on
CPU otherwise, in an autoscaling pool of 1..``max_actors`` with fractional CPUs
(fixed pools asking for more CPUs than exist hang on 2-core machines). Scores are small,
so they are gathered on the driver and joined onto the dataset by
:func:`rayrg.rewards.base.write_labelled_dataset`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from rayrg.data.access import FRAME_COLUMNS, Dataset, read_shard_checked
from rayrg.data.schema import SCALAR_COLUMNS, decode_png
from rayrg.errors import stage_errors
from rayrg.models.weights import check_model_weights
from rayrg.pipeline_check import is_tiny_random
from rayrg.rewards.base import write_labelled_dataset
from rayrg.rewards.similarity.config import SimilarityConfig

if TYPE_CHECKING:
    # Types only: method.py runs this module's ``label`` (method -> stages); importing the
    # method classes at run time would close a cycle (pyproject's import-linter contracts).
    from rayrg.rewards.similarity.method import EpisodeMethod, FrameMethod, SimilarityMethod

log = logging.getLogger(__name__)

_FRAME_INPUT = ["episode_id", "step", "instruction", "frame", "final_frame"]
OBS_SCHEMA = pa.schema([
    pa.field("variant", pa.int32()),  # index into the configs scored in this pass
    pa.field("episode_id", pa.string()),
    pa.field("obs_index", pa.int32()),  # o_t: the frame of row t; o_T: final_frame of the last row
    pa.field("score", pa.float64()),  # clip: p(goal); vlmrm: reward; blip2: P(match) or ITC cosine
    pa.field("cosine", pa.float64()),  # cos(frame, goal prompt); NaN where the method has none
    pa.field("num_parameters", pa.int64()),
])
EPISODE_SCHEMA = pa.schema([
    pa.field("variant", pa.int32()),
    pa.field("episode_id", pa.string()),
    pa.field("last_step", pa.int32()),
    pa.field("score", pa.float64()),
    pa.field("num_parameters", pa.int64()),
])


class FrameScorer:
    """``map_batches`` actor: per-frame scores of one :class:`FrameMethod`.

    Scores one or more *variants* (configs of one method that differ in model, prompt or
    math) per batch, so a report sweep decodes each frame once and loads each model once.
    """

    def __init__(self, method: FrameMethod, configs: list[dict[str, Any]],
                 negatives: list[dict[str, list[str]]], episodes: list[str] | None = None) -> None:
        self.method = method
        self.configs = [method.config_cls.from_dict(c) for c in configs]
        self.negatives = negatives
        self.episodes = set(episodes) if episodes is not None else None
        self.observation = self.configs[0].observation  # type: ignore[attr-defined]
        self.models: dict[str, Any] = {}
        for c in self.configs:
            key = method.model_key(c)
            if key not in self.models:
                self.models[key] = method.load(c)

    def _observations(self, batch: pa.Table) -> tuple[list[str], list[int], list[bytes], list[str]]:
        episodes, index, pngs, instructions = [], [], [], []
        rows = zip(*(batch.column(c).to_pylist() for c in _FRAME_INPUT), strict=True)
        for episode, step, instruction, frame, final_frame in rows:
            if self.episodes is not None and episode not in self.episodes:
                continue
            wanted = [(step, frame)] if self.observation == "current" or step > 0 else []
            if self.observation == "next" and final_frame is not None:
                wanted.append((step + 1, final_frame))
            for i, png in wanted:
                episodes.append(episode)
                index.append(i)
                pngs.append(png)
                instructions.append(instruction)
        return episodes, index, pngs, instructions

    def __call__(self, batch: pa.Table) -> pa.Table:
        episodes, index, pngs, instructions = self._observations(batch)
        if not pngs:
            return OBS_SCHEMA.empty_table()
        images = _decode_all(pngs, batch.column("path").to_pylist() if "path" in batch.column_names else [])
        cache: dict[str, Any] = {}
        tables = []
        for variant, c in enumerate(self.configs):
            model = self.models[self.method.model_key(c)]
            scores = self.method.score_frames(model, c, images, instructions, self.negatives[variant], cache)
            tables.append(pa.table({
                "variant": pa.array([variant] * len(pngs), pa.int32()),
                "episode_id": pa.array(episodes, pa.string()), "obs_index": pa.array(index, pa.int32()),
                "score": pa.array(scores["score"], pa.float64()),
                "cosine": pa.array(scores["cosine"], pa.float64()),
                "num_parameters": pa.array([model.num_parameters] * len(pngs), pa.int64()),
            }, schema=OBS_SCHEMA))
        return pa.concat_tables(tables)


def _decode_all(pngs: list[bytes], shards: list[str]) -> list[np.ndarray]:
    """Decode frames; a corrupt one is reported as ``rayrg inspect`` would: shard and row."""
    try:
        return [decode_png(p) for p in pngs]
    except Exception:
        # Checked one by one only on failure: the fast path decodes each frame once.
        for shard in dict.fromkeys(shards):
            read_shard_checked(shard, FRAME_COLUMNS, decode_images=True)
        raise


def read_episode_videos(batch: dict[str, np.ndarray], episodes: list[str] | None = None) -> pa.Table:
    """Task: read whole shards (episodes never span shards) -> one row per episode with all
    its observations' PNGs (o_0 .. o_T) in order."""
    keep = set(episodes) if episodes is not None else None
    out: dict[str, list[Any]] = {"episode_id": [], "instruction": [], "last_step": [], "frames": [],
                                 "path": []}
    for path in batch["path"]:
        table = read_shard_checked(str(path), _FRAME_INPUT, validate=False)  # checked on the driver
        rows = zip(*(table.column(c).to_pylist() for c in _FRAME_INPUT), strict=True)
        current: str | None = None
        for episode, step, instruction, frame, final_frame in rows:
            if keep is not None and episode not in keep:
                continue
            if episode != current:
                current = episode
                for k, v in (("episode_id", episode), ("instruction", instruction), ("last_step", step),
                             ("frames", []), ("path", str(path))):
                    out[k].append(v)
            out["frames"][-1].append(frame)
            out["last_step"][-1] = step
            if final_frame is not None:
                out["frames"][-1].append(final_frame)
    return pa.table({"episode_id": pa.array(out["episode_id"], pa.string()),
                     "instruction": pa.array(out["instruction"], pa.string()),
                     "last_step": pa.array(out["last_step"], pa.int32()),
                     "frames": pa.array(out["frames"], pa.list_(pa.binary())),
                     "path": pa.array(out["path"], pa.string())})


class VideoScorer:
    """``map_batches`` actor: one score per episode and variant of one :class:`EpisodeMethod`."""

    def __init__(self, method: EpisodeMethod, configs: list[dict[str, Any]]) -> None:
        self.method = method
        self.configs = [method.config_cls.from_dict(c) for c in configs]
        self.models: dict[str, Any] = {}
        for c in self.configs:
            key = method.model_key(c)
            if key not in self.models:
                self.models[key] = method.load(c)

    def __call__(self, batch: pa.Table) -> pa.Table:
        paths = batch.column("path").to_pylist() if "path" in batch.column_names else []
        videos = [_decode_all(episode, paths) for episode in batch.column("frames").to_pylist()]
        instructions = batch.column("instruction").to_pylist()
        tables = []
        for variant, c in enumerate(self.configs):
            model = self.models[self.method.model_key(c)]
            score = self.method.score_videos(model, c, videos, instructions) if videos else np.zeros(0)
            tables.append(pa.table({
                "variant": pa.array([variant] * len(videos), pa.int32()),
                "episode_id": batch.column("episode_id"), "last_step": batch.column("last_step"),
                "score": pa.array(score, pa.float64()),
                "num_parameters": pa.array([model.num_parameters] * len(videos), pa.int64())},
                schema=EPISODE_SCHEMA))
        return pa.concat_tables(tables)


def _actor_kwargs(config: SimilarityConfig) -> dict[str, Any]:
    import ray
    from ray.data import ActorPoolStrategy

    gpus = config.num_gpus
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    kwargs: dict[str, Any] = {"compute": ActorPoolStrategy(min_size=1, max_size=config.max_actors),
                              "num_cpus": config.num_cpus, "batch_size": config.batch_size,
                              "batch_format": "pyarrow"}
    if gpus:
        kwargs["num_gpus"] = gpus
    return kwargs


def _gather(ds: Any, schema: pa.Schema) -> pa.Table:
    import ray

    tables = [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
    return pa.concat_tables([t.select(schema.names).cast(schema) for t in tables]) if tables else schema.empty_table()


@dataclass
class Scored:
    """Scores of one config on one dataset, per transition (rows of ``keys``)."""

    keys: pa.Table  # SCALAR_COLUMNS of the dataset, in dataset order
    score: np.ndarray  # float64; NaN where not scored
    cosine: np.ndarray  # float64; NaN where the method has none
    num_parameters: int | None
    granularity: str  # "transition" | "episode_end"
    negatives: dict[str, list[str]]
    wall_s: float  # of the whole pass (shared by variants scored together)


def _selected_episodes(keys: pa.Table, max_episodes: int | None) -> list[str] | None:
    if max_episodes is None:
        return None
    return list(dict.fromkeys(keys.column("episode_id").to_pylist()))[:max_episodes]


def _keyed(keys: pa.Table) -> list[tuple[str, int]]:
    return list(zip(keys.column("episode_id").to_pylist(), keys.column("step").to_pylist(), strict=True))


def score_variants(method: SimilarityMethod, configs: Sequence[SimilarityConfig], dataset: str | Path, *,
                   address: str | None = None) -> list[Scored]:
    """Score ``dataset`` with every config of ``method`` in ONE Ray Data pass; scores per transition each.

    The configs must share the method and, for per-frame methods, the observation choice;
    they may differ in model, prompt and math (the scaling and prompt reports). Actor
    resources and the batch size come from the first config.
    """
    import ray

    from rayrg.runtime import init_ray, quiet_ray_data

    first = configs[0]
    if len({(c.method, getattr(c, "observation", None), c.max_episodes) for c in configs}) != 1:
        raise ValueError("variants scored in one pass must share method, observation and max_episodes")
    if first.method != method.name:
        raise ValueError(f"configs of method {first.method!r} given to method {method.name!r}")
    for c in configs if address in (None, "", "local") else ():  # on a cluster: the workers' disks
        check_model_weights(c.model, "model")
    start = time.perf_counter()
    from rayrg.storage import open_input
    from rayrg.windows.staging import as_arg

    dataset = as_arg(open_input(dataset))  # a path or a URI (rayrg.storage)
    # Structure (steps, nulls) checked here on the driver; frames are checked where decoded.
    source = Dataset.open(dataset)
    keys = source.read(SCALAR_COLUMNS)
    episodes = _selected_episodes(keys, first.max_episodes)
    init_ray(address)
    quiet_ray_data()
    files = [str(f) for f in source.shards]
    config_dicts = [c.to_dict() for c in configs]
    instructions = keys.column("instruction").to_pylist()
    negatives = [method.negatives(c, instructions) for c in configs]

    if method.granularity == "episode_end":
        ds = ray.data.from_items([{"path": f} for f in files])
        ds = ds.map_batches(read_episode_videos, fn_kwargs={"episodes": episodes}, batch_size=1,
                            batch_format="numpy", num_cpus=0.25)
        ds = ds.map_batches(VideoScorer, fn_constructor_args=(method, config_dicts), **_actor_kwargs(first))
        with stage_errors():
            table = _gather(ds, EPISODE_SCHEMA)
    else:
        ds = source.ray_read(_FRAME_INPUT, include_paths=True)
        ds = ds.map_batches(FrameScorer, fn_constructor_args=(method, config_dicts, negatives, episodes),
                            **_actor_kwargs(first))
        with stage_errors():
            table = _gather(ds, OBS_SCHEMA)
    wall_s = time.perf_counter() - start

    keyed = _keyed(keys)
    variant_column = np.asarray(table.column("variant").to_numpy())
    results = []
    for v, config in enumerate(configs):
        part = table.filter(pa.array(variant_column == v))
        score, cosine = np.full(keys.num_rows, np.nan), np.full(keys.num_rows, np.nan)
        if method.granularity == "episode_end":
            by_end = dict(zip(zip(part.column("episode_id").to_pylist(), part.column("last_step").to_pylist(),
                                  strict=True), part.column("score").to_pylist(), strict=True))
            done = {e for e, _ in by_end}
            for i, (e, s) in enumerate(keyed):
                if e in done:
                    score[i] = by_end.get((e, s), 0.0)  # 0 before the episode's end
        else:
            obs = {(e, i): (s, c) for e, i, s, c in zip(
                *(part.column(k).to_pylist() for k in ("episode_id", "obs_index", "score", "cosine")), strict=True)}
            shift = 1 if config.observation == "next" else 0  # type: ignore[attr-defined]
            for i, (e, s) in enumerate(keyed):
                if (e, s + shift) in obs:
                    score[i], cosine[i] = obs[(e, s + shift)]
        params = part.column("num_parameters").to_pylist()
        results.append(Scored(keys=keys, score=score, cosine=cosine, num_parameters=params[0] if params else None,
                              granularity=method.granularity, negatives=negatives[v], wall_s=wall_s))
    return results


def score_dataset(method: SimilarityMethod, config: SimilarityConfig, dataset: str | Path, *,
                  address: str | None = None) -> Scored:
    """Run the method's Ray Data stage over ``dataset``; scores per transition."""
    return score_variants(method, [config], dataset, address=address)[0]


def provenance(method: SimilarityMethod, config: SimilarityConfig, scored: Scored) -> dict[str, Any]:
    """How the column was made (model, prompts, math parameters); never secrets."""
    instructions = sorted(scored.negatives) or sorted(set(scored.keys.column("instruction").to_pylist()))
    example = instructions[0] if instructions else "<instruction>"
    prov: dict[str, Any] = {
        "method": config.method, "model": config.model, "num_parameters": scored.num_parameters,  # type: ignore[attr-defined]
        "template": config.template, "example_prompt": config.prompt(example),
        "granularity": scored.granularity, "config": config.to_dict(),
        "tiny_random_weights": is_tiny_random(config.model),
    }
    prov.update(method.provenance(config, scored, example))
    return prov


def summary(config: SimilarityConfig, scored: Scored) -> dict[str, Any]:
    valid = ~np.isnan(scored.score)
    return {"method": config.method, "model": config.model, "transitions": len(scored.score),
            "labelled": int(valid.sum()), "wall_s": round(scored.wall_s, 3),
            "score_mean": float(np.nanmean(scored.score)) if valid.any() else None,
            "score_min": float(np.nanmin(scored.score)) if valid.any() else None,
            "score_max": float(np.nanmax(scored.score)) if valid.any() else None}


def _write(config: SimilarityConfig, scored: Scored, columns: dict[str, np.ndarray],
           provenances: dict[str, dict[str, Any]], dataset: Any, out: Any) -> Any:
    from rayrg.storage import prepare_output
    from rayrg.windows.staging import as_arg

    out_loc = prepare_output(out)
    out = as_arg(out_loc)
    import yaml

    # the public config (as StageConfig.to_yaml writes it), through storage
    (out_loc / f"_{config.method}.yaml").write_text(yaml.safe_dump(config.to_public_dict(), sort_keys=True))
    rewards = pa.table({"episode_id": scored.keys.column("episode_id"), "step": scored.keys.column("step"),
                        **{k: pa.array(v.astype(np.float32), pa.float32()) for k, v in columns.items()}})
    write_labelled_dataset(dataset, rewards, out, provenance=provenances)
    info = summary(config, scored)
    (out_loc / f"_{config.method}_summary.json").write_text(json.dumps(info, indent=2))
    log.info("%s: %d/%d transitions labelled with %s in %.1f s", config.method, info["labelled"],
             info["transitions"], config.model, scored.wall_s)
    return out


def label(method: SimilarityMethod, config: SimilarityConfig, dataset: str | Path, out: str | Path, *,
          address: str | None = None) -> Path:
    """Label ``dataset`` into ``out`` with the method's columns and provenance."""
    scored = score_dataset(method, config, dataset, address=address)
    columns, provenances = method.columns(config, scored, provenance(method, config, scored))
    return _write(config, scored, columns, provenances, dataset, out)
