"""What GVL and TOPReward share: their config base, the query rows, the Ray Data labeller
(answer cache, backend, validation with re-asks), and the labelled dataset with shaping.

::

    trajectories ──per episode: sample K frames (chunks for long ones)──► query rows
        └─ ray.data.from_items ─► map_batches(_ProgressLabeller)   (actors: cache lookup,
              backend.answer_prompts, validate, re-ask invalid, cache valid answers)
              └─ per-frame progress (interpolated, chunks stitched) ─► progress_<m>, reward_<m>

A method module (``gvl.py``, ``topreward.py``) supplies ``rows`` (queries of one episode),
``query`` (a row's :class:`PromptQuery`), ``parse`` (answer → progress at the row's frames,
or the reason it is invalid) and ``combine`` (an episode's answered rows → per-frame progress
and the chunks' disagreement). Frames of an episode are its steps' frames plus its final frame
when one was recorded, so the last transition's shaping has Φ(s′).

Side outputs: ``<out>/_cache`` (unless ``cache_dir``), ``<out>/_<method>_summary.json``
(the labels contract's summary: failed queries and their reasons, short episodes, bounded
frames, chunk disagreement, tokens, cost).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from rayrg.contracts.progress_answers import CHUNK_DISAGREEMENT
from rayrg.rewards.rgvlm import backends as _backends
from rayrg.rewards.rgvlm.cache import CachedBackendActor
from rayrg.rewards.rgvlm.settings import BackendSettings, Decoding, PromptedConfig

__all__ = ["ProgressConfig", "label_progress", "rebuild_backend_field"]


class ProgressConfig(PromptedConfig):
    """Fields GVL and TOPReward share (``backend`` and ``decoding`` as RG-VLM's)."""

    ANSWER_FIELDS = frozenset({"backend", "decoding", "prompt_version", "frames", "max_image_side", "max_tokens"})
    # gamma shapes the reward column only (it enters the labels' fingerprint, not answers)
    NEUTRAL_FIELDS = frozenset({"method", "max_parse_attempts", "gamma", "cache_dir", "max_episodes"})

    backend: BackendSettings  # replaced by the backend registry's union (rebuild_backend_field)
    decoding: Decoding = Field(default_factory=Decoding)
    prompt_version: str = "v1"
    frames: int = Field(16, ge=2, description="K: frames sampled per episode (GVL: per chunk).")
    max_image_side: int | None = Field(256, ge=28, description="Downscale frames whose longer side exceeds this.")
    max_tokens: int = Field(256, ge=1, description="Answer budget per query.")
    max_parse_attempts: int = Field(3, ge=1, description="Asks per query before it is marked failed.")
    # 0.97: the learner's default discount (rayrg.rl.config.TrainConfig.gamma), so a column labelled
    # with the defaults trains with the defaults; `rayrg run` sets it from train.gamma when unset.
    gamma: float = Field(0.97, gt=0, le=1, description="Discount of the shaping γ·Φ(s′) − Φ(s): the learner's.")
    cache_dir: Path | None = Field(None, description="Answer cache (default <out>/_cache).")
    max_episodes: int | None = Field(None, ge=1, description="Label only the first N episodes (smoke tests).")


def rebuild_backend_field(cls: type[ProgressConfig]) -> None:
    """``backend``: the registered backends' configs by ``type`` (rebuilt when one registers)."""
    from rayrg.rewards.rgvlm.config import backend_config_union

    def rebuild() -> None:
        cls.model_fields["backend"].annotation = backend_config_union()
        cls.model_rebuild(force=True)

    rebuild()
    _backends.on_register(rebuild)


def _spec(name: str):
    return importlib.import_module(f"rayrg.rewards.progress.{name}")


def image_digest(images: list[bytes]) -> bytes:
    """What the cache key hashes for several images: their digests in the order sent."""
    return b"".join(hashlib.sha256(i).digest() for i in images)


def episode_frames(dataset: Path, max_episodes: int | None, max_side: int | None):
    """(episode_id, instruction, frames, num_transitions) per episode, shard by shard."""
    from rayrg.data.access import Dataset, episode_frames, iter_episodes
    from rayrg.rewards.rgvlm.pipeline import cap_image

    data = Dataset.open(dataset)
    columns = ["episode_id", "step", "instruction", "frame"] + (["final_frame"] if "final_frame" in data.names else [])
    seen = 0
    for shard in data.shards:
        for ep in iter_episodes(data.read_shard(shard, columns=columns)):
            if max_episodes is not None and seen >= max_episodes:
                return
            seen += 1
            yield (ep.column("episode_id")[0].as_py(), ep.column("instruction")[0].as_py(),
                   [cap_image(f, max_side) for f in episode_frames(ep)], ep.num_rows)


class _ProgressLabeller(CachedBackendActor):
    """``map_batches`` actor: one backend per actor; cache hits never reach it."""

    def __init__(self, method: str, config_dict: dict[str, Any], cache_dir: str, share: float,
                 backend_cls: type, identity: str) -> None:
        self.spec = _spec(method)
        self.config = self.spec.CONFIG.from_dict(config_dict)
        super().__init__(self.config, cache_dir, share, backend_cls)
        self.settings = {**self.config.answer_settings(), "method": method, "model_identity": identity}

    def __call__(self, batch: pa.Table) -> pa.Table:
        from rayrg.rewards.rgvlm.backends.base import PromptAnswer

        rows = batch.to_pylist()
        queries = [self.spec.query(row, self.config, self.settings) for row in rows]
        hits = self.cache.get_many([q.key for q in queries])
        results: dict[int, tuple[PromptAnswer, Any, bool]] = {}
        todo = []
        for i, (row, q) in enumerate(zip(rows, queries, strict=True)):
            hit = hits.get(q.key)
            if hit is not None:
                hit.pop("query_id", None)
                answer = PromptAnswer(**hit)
                results[i] = (answer, self.spec.parse(row, answer, self.config), True)
            else:
                todo.append(i)
        asked: dict[int, PromptAnswer] = {i: PromptAnswer() for i in todo}
        for _ in range(self.config.max_parse_attempts):
            if not todo:
                break
            answers = self.backend.answer_prompts([queries[i] for i in todo])
            still = []
            for i, answer in zip(todo, answers, strict=True):
                total = asked[i]
                answer.backend_calls += total.backend_calls
                answer.input_tokens += total.input_tokens
                answer.output_tokens += total.output_tokens
                answer.invalid_answers = total.invalid_answers
                answer.attempts = total.attempts + 1
                parsed = self.spec.parse(rows[i], answer, self.config) if answer.error is None else None
                if parsed is not None and parsed[1] is None:
                    self.cache.put(queries[i].key, {"query_id": rows[i]["query_id"], **answer.to_dict()})
                else:
                    answer.invalid_answers += parsed is not None  # an answer that came but did not validate
                    answer.error = answer.error or (parsed[1] if parsed else "no answer")
                    if parsed is not None:  # transport errors were retried by the backend already
                        still.append(i)
                asked[i] = answer
                results[i] = (answer, parsed, False)
            todo = still
        self.cache.flush()
        out = []
        for i, row in enumerate(rows):
            answer, parsed, cached = results[i]
            values, error, bounded = parsed if parsed is not None else (None, answer.error or "no answer", 0)
            ok = error is None and values is not None
            out.append({"query_id": row["query_id"], "episode_id": row["episode_id"], "chunk_start": row["chunk_start"],
                        "chunk_stop": row["chunk_stop"], "steps": row["steps"], "order": row.get("order"),
                        "values": [float(v) for v in values] if ok else None,
                        "status": "ok" if ok else "failed", "error": None if ok else str(error),
                        "bounded": int(bounded) if ok else 0, "text": answer.text,
                        "input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens,
                        "backend_calls": 0 if cached else answer.backend_calls, "cached": cached,
                        "invalid_answers": answer.invalid_answers, "latency_s": answer.latency_s})
        return pa.Table.from_pylist(out)


def preflight(method: str, config: ProgressConfig, local: bool) -> type:
    """Backend checks before any call; TOPReward refuses a backend without log-probabilities."""
    from rayrg.config import ConfigError

    backend_cls = _backends.backend_class(config.backend.type)
    if _spec(method).NEEDS_LOGPROBS:
        why = backend_cls.logprobs_unavailable(config.backend)
        if why:
            raise ConfigError(f"{method}: {why}; it reads progress from log-probabilities: use backend "
                              "type transformers, vllm, openai (a server with logprobs) or gemini")
    backend_cls.preflight(config.backend, local=local)
    return backend_cls


def summarize(method: str, results: list[dict[str, Any]], episodes: int, short: int,
              disagreement: list[float], config: ProgressConfig, wall_s: float) -> dict[str, Any]:
    failed = [r for r in results if r["status"] == "failed"]
    reasons: dict[str, int] = defaultdict(int)
    for r in failed:
        reasons[str(r["error"]).split(":")[0][:60]] += 1
    price_in, price_out = config.backend.price_input_per_mtok, config.backend.price_output_per_mtok
    tokens_in = sum(r["input_tokens"] for r in results)
    tokens_out = sum(r["output_tokens"] for r in results)
    queried = [r for r in results if not r["cached"]]
    return {
        "method": method, "episodes": episodes, "windows": len(results),  # windows: queries (labels contract)
        "labelled": len(results) - len(failed), "failed": len(failed),
        "failed_windows_sha": hashlib.sha256("\n".join(sorted(r["query_id"] for r in failed)).encode()).hexdigest()[:16],
        "failure_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "short_episodes": short,  # fewer frames than K: every frame was used
        "frames_per_query": config.frames,
        "bounded_frames": sum(r["bounded"] for r in results),  # TOPReward: affirmative token not in the top-k
        CHUNK_DISAGREEMENT: {"mean": float(np.mean(disagreement)) if disagreement else None,
                               "max": float(np.max(disagreement)) if disagreement else None,
                               "episodes": len(disagreement)},
        "cached": sum(bool(r["cached"]) for r in results),
        "backend_calls": sum(r["backend_calls"] for r in results),
        "invalid_answers": sum(r["invalid_answers"] for r in results),
        "input_tokens": tokens_in, "output_tokens": tokens_out,
        "cost_usd": (tokens_in * price_in + tokens_out * price_out) / 1e6,
        "this_run": {"queried": len(queried), "wall_s": round(wall_s, 3)},
    }


def label_progress(method: str, config: ProgressConfig, dataset: Path, out: Path, *,
                   address: str | None = None) -> Path:
    import ray

    from rayrg.contracts.labels import write_summary
    from rayrg.errors import stage_errors
    from rayrg.pipeline_check import is_tiny_random
    from rayrg.rewards.base import reward_column, write_labelled_dataset
    from rayrg.rewards.rgvlm.cache import AnswerCache
    from rayrg.rewards.shaping import progress_shaping, shaping_provenance
    from rayrg.runtime import init_ray, quiet_ray_data

    spec = _spec(method)
    dataset, out = Path(dataset), Path(out)
    start = time.perf_counter()
    backend_cls = preflight(method, config, local=address in (None, "", "local"))
    identity = backend_cls.model_identity(config.backend)
    out.mkdir(parents=True, exist_ok=True)
    config.to_yaml(out / f"_{method}.yaml")
    cache_dir = Path(config.cache_dir or out / "_cache")
    AnswerCache(cache_dir)

    lengths: dict[str, int] = {}
    transitions: dict[str, int] = {}
    rows: list[dict[str, Any]] = []
    short = 0
    for episode_id, instruction, frames, num_transitions in episode_frames(dataset, config.max_episodes,
                                                                          config.max_image_side):
        lengths[episode_id], transitions[episode_id] = len(frames), num_transitions
        short += len(frames) < config.frames
        rows.extend(spec.rows(config, episode_id, instruction, frames))

    results: list[dict[str, Any]] = []
    if rows:
        init_ray(address)
        quiet_ray_data()
        plan = backend_cls.ray_plan(config.backend)
        from ray.data import ActorPoolStrategy

        strategy: dict[str, Any] = {"size": plan.num_actors}
        if plan.concurrent_calls > 1:
            strategy["max_concurrent_calls_per_actor"] = 1  # the labeller is a sync UDF
        ds = ray.data.from_items(rows).repartition(target_num_rows_per_block=plan.batch_size)
        kwargs = {"num_cpus": plan.num_cpus, "num_gpus": plan.num_gpus}
        ds = ds.map_batches(_ProgressLabeller, fn_constructor_args=(method, config.to_dict(), str(cache_dir),
                                                                    1.0 / plan.num_actors, backend_cls, identity),
                            compute=ActorPoolStrategy(**strategy), batch_size=plan.batch_size,
                            batch_format="pyarrow", **{k: v for k, v in kwargs.items() if v is not None})
        with stage_errors():
            results = ds.take_all()

    by_episode: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_episode[r["episode_id"]].append(r)
    progress: dict[str, np.ndarray] = {}
    disagreement: list[float] = []
    for episode_id, length in lengths.items():
        values, disagree = spec.combine(config, length, by_episode.get(episode_id, []))
        progress[episode_id] = values
        if disagree is not None:
            disagreement.append(disagree)

    summary = summarize(method, results, len(lengths), short, disagreement, config, time.perf_counter() - start)
    progress_col, reward_col = f"progress_{method}", reward_column(method)
    prov = {"method": method, "backend": config.backend.type, "model": config.backend.model,
            "model_identity": identity, "tiny_random_weights": is_tiny_random(config.backend.model),
            "prompt_version": config.prompt_version, "frames": config.frames,
            **spec.provenance(config), "summary": {k: v for k, v in summary.items() if k != "this_run"}}

    def shard_columns(keys: pa.Table) -> dict[str, np.ndarray]:
        n = keys.num_rows
        phi = np.full(n, np.nan, dtype=np.float32)
        shaped = np.full(n, np.nan, dtype=np.float32)
        episode_ids = keys.column("episode_id").to_pylist()
        steps = np.asarray(keys.column("step").to_pylist())
        for episode_id in dict.fromkeys(episode_ids):
            rows_of = np.flatnonzero(np.asarray(episode_ids) == episode_id)
            values = progress.get(episode_id)
            if values is None:
                continue  # beyond max_episodes: unlabelled (NaN)
            t = transitions[episode_id]
            final = float(values[t]) if len(values) > t else None
            reward = progress_shaping(values[:t], config.gamma, final)
            phi[rows_of] = values[steps[rows_of]]
            shaped[rows_of] = reward[steps[rows_of]]
        return {progress_col: phi, reward_col: shaped}

    write_labelled_dataset(dataset, shard_columns, out, provenance={
        progress_col: prov, reward_col: {**prov, **shaping_provenance(config.gamma, progress_col)}})
    summary["cache_dir"] = str(cache_dir)
    write_summary(out, summary, name=f"_{method}_summary.json")
    # Per query: sampled steps, shown order, answered values, status, reason (the browser's source).
    from rayrg.contracts.progress_answers import write_answers

    write_answers(out, method, results)
    print(f"[rayrg] {method}: {summary['episodes']} episodes, {summary['windows']} queries, {summary['failed']} "
          f"failed, {summary['cached']} cached, {summary['backend_calls']} model calls"
          + (f", {short} episodes shorter than K={config.frames} (every frame used)" if short else "")
          + (f", {summary['bounded_frames']} frames bounded (affirmative token not in the top-k)"
             if summary["bounded_frames"] else ""), flush=True)
    return out


def answer_json(text: str | None) -> Any:
    """The JSON object in an answer (fenced or bare); ValueError when there is none."""
    if not text:
        raise ValueError("empty answer")
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`")
        body = body[body.find("{"):] if "{" in body else body
    start, stop = body.find("{"), body.rfind("}")
    if start < 0 or stop < start:
        raise ValueError(f"no JSON object in {text[:60]!r}")
    return json.loads(body[start:stop + 1])


# -- declarations (rayrg.rewards.declarations): what GVL and TOPReward tell the generic loops --
def declarations(method: str) -> dict[str, Any]:
    """The :class:`~rayrg.rewards.registry.LabelMethod` declaration fields of ``method``
    (``gvl`` or ``topreward``): its backend's needs (plus log-probabilities for TOPReward, a
    capability preflight checks before any call), cost, estimate, columns and plan line. Both
    show frames and the instruction only, so datasets without action names are fine."""
    from rayrg.rewards.declarations import Need, OutputColumn, SimpleEstimate

    spec = _spec(method)

    def needs(config: ProgressConfig) -> list[Need]:
        cls = _backends.backend_class(config.backend.type)
        found = list(cls.needs(config.backend))
        if spec.NEEDS_LOGPROBS:
            why = cls.logprobs_unavailable(config.backend)
            found.append(Need("capability", "backend.type", why or "", workers=False,
                              why=f"{method} reads progress from log-probabilities: use transformers, vllm, "
                                  "openai (a server that returns logprobs) or gemini"))
        return found

    def paid(config: ProgressConfig) -> bool:
        return bool(config.backend.paid)

    def estimate(config: ProgressConfig, dataset: Path, options: Any) -> SimpleEstimate:
        from rayrg.data.access import Dataset, episode_ends
        from rayrg.data.schema import decode_png

        data = Dataset.open(dataset)
        table = data.read(["episode_id"])
        ends = np.flatnonzero(episode_ends(table.column("episode_id")))
        lengths = np.diff(np.concatenate([[-1], ends])).tolist()
        if config.max_episodes is not None:
            lengths = lengths[:config.max_episodes]
        first = data.read_shard(data.shards[0], columns=["frame"]).column("frame")[0].as_py()
        height, width = decode_png(first).shape[:2]
        # +1 frame per episode: the final observation is shown too (where the dataset has it)
        counts = spec.estimate(config, [n + 1 for n in lengths], (width, height))
        wall = None if options is None or options.latency_s is None else counts["requests"] * options.latency_s
        return SimpleEstimate(method, counts["requests"], counts["input_tokens"], counts["output_tokens"],
                              counts["cost_usd"], wall_s=wall,
                              notes=[f"{len(lengths)} episodes, {counts.get('images', 0):,} images sent"])

    def outputs(config: ProgressConfig) -> list[OutputColumn]:
        return [OutputColumn(f"progress_{method}", "progress", "the model's task progress per frame, in [0, 1]"),
                OutputColumn(f"reward_{method}", "reward",
                             f"potential-based shaping γ·Φ(s′) − Φ(s) of progress_{method}, γ = {config.gamma}")]

    def describe(config: ProgressConfig) -> str:
        return (f"{method}: {config.backend.model} on {config.backend.type}, {config.frames} frames per "
                f"episode{' (log-probabilities)' if spec.NEEDS_LOGPROBS else ''}")

    def dataset_needs(config: ProgressConfig) -> list[str]:
        return []  # frames and the instruction only: unnamed or continuous actions are fine

    def browser_section(labelled: Path, options: Any) -> Any:
        from rayrg.rewards.progress.browse import browser_section

        return browser_section(method, labelled, options)

    return {"needs": needs, "dataset_needs": dataset_needs, "paid": paid, "estimate": estimate,
            "outputs": outputs, "describe": describe, "browser_section": browser_section}


def progress_method(method: str, config_cls: type, prompts: dict[str, Any]) -> Any:
    """The :class:`~rayrg.rewards.registry.LabelMethod` of ``method`` (``gvl`` or
    ``topreward``): its run, what fixes its result besides the config (the prompt texts and the
    model's identity) and its declarations."""
    from dataclasses import asdict

    from rayrg.rewards.registry import LabelMethod

    def run(config: ProgressConfig, dataset: Any, out: Any, *, address: str | None = None) -> Any:
        return label_progress(method, config, Path(dataset), Path(out), address=address)

    def extra_inputs(config: ProgressConfig) -> dict[str, Any]:
        return {"prompt": asdict(prompts[config.prompt_version]),
                "model_identity": _backends.backend_class(config.backend.type).model_identity(config.backend)}

    return LabelMethod(method, config_cls, run, extra_inputs=extra_inputs, keep_on_redo=("_cache",),
                       **declarations(method))
