"""Overhead of rayrg's vLLM paths over the bare engine, on the same windows.

(a) bare engine: one process, ``vllm.LLM.chat`` on all windows' turn 1, then on all turn 2s
    (scores schema), the reference;
(b) rayrg's ``vllm`` backend: Ray Data, one labeller actor owning one engine;
(c) rayrg's ``openai`` backend over ``vllm serve`` (same engine settings) on 127.0.0.1.

All three are timed alike: each path is started (engine / actor / server) and warmed with as
many OTHER windows first, so start and first-call costs are out of the figure; then "run" is
the time from handing the path the measured windows until every answer is back. Start and
warm-up seconds are printed separately and are in no ratio.

(a) start = ``LLM(...)``; warm-up = both turns on the warm-up windows; run = both turns.
(b) one dataset of two blocks [warm-up, measured], ``batch_size`` = one block, one actor that
    runs one call at a time. Ray Data buffers a task's outputs, so the two batches can reach
    the driver together (the earlier timer, started at the first batch the driver saw, thus
    reported 40x); the labeller class is therefore wrapped to stamp each call's start and end
    on the actor (same machine clock as the driver). run = end of the warm-up call to end of
    the measured call (Ray Data's hand-off of the next batch + the whole labeller call);
    start = submit to end of the warm-up call (Ray Data, actor and engine start, warm-up).
(c) start = ``vllm serve`` until ``/health`` answers; warm-up = a whole pipeline over the
    warm-up windows (the async labeller runs 4 calls at once, so warm-up and measured windows
    in one dataset would overlap); run = start to end of the measured pipeline's labeller
    call(s), ``max_in_flight`` = all windows. That pipeline's own Ray Data + (engine-less)
    actor start is printed beside it.
(d) a raw aiohttp client in this plain process (no Ray, no rayrg backend) sending the same
    requests (rayrg's request bodies, turn 2 right after each window's turn 1, all windows in
    flight) to the same server, after a warm-up pass on the warm-up windows, on as many windows
    the server has not seen (its prefix cache holds (c)'s). (d) vs (a) is
    what ``vllm serve``'s own HTTP/API layer costs; (c) vs (d) is what rayrg's client and Ray
    Data cost on top. That is where the OpenAI path's time goes. Beside (c) and (d), the CPU
    seconds each group of processes used (vllm serve's API process and engine, this process,
    Ray's processes): on a machine where client and server share the cores, client CPU is
    server time lost.

Needs ``.venv-vllm`` (``make vllm-venv``)::

    PYTHONPATH=$PWD .venv-vllm/bin/python benchmarks/bench_label_vllm.py --windows 256
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rayrg.rewards.rgvlm import pipeline as _pipeline

MAX_PIXELS = 28 * 28 * 16
# On CPU vLLM reserves this share of HOST memory for its KV cache (0.9 would not start here).
MEM = 0.1
DECODING = {"max_tokens_analysis": 32, "max_tokens_scores": 48}


def windows(n: int) -> pa.Table:
    from rayrg.data.schema import encode_png
    from rayrg.windows.grid import actions_text

    rows = []
    for i in range(n):
        rng = np.random.default_rng(i)
        steps = list(range(8))
        names = [["left", "right", "forward"][s % 3] for s in steps]
        rows.append({"window_id": f"ep{i}:0", "episode_id": f"ep{i}", "start_step": 0, "num_steps": 8,
                     "is_partial": False, "task_id": "t", "instruction": "go to the red ball",
                     "image": encode_png(rng.integers(0, 255, (32, 64, 3), dtype=np.uint8)),
                     "actions": [s % 3 for s in steps], "actions_text": actions_text(steps, names),
                     "expert_actions": [s % 3 for s in steps], "subtasks_before": 0,
                     "subtasks_completed": [0] * 8, "episode_success": True, "episode_last_step": 20})
    return pa.Table.from_pylist(rows)


def config(backend: dict[str, Any]):
    from rayrg.rewards.rgvlm.config import RGVLMConfig

    return RGVLMConfig.from_dict({"method": "rgvlm", "decoding": DECODING, "backend": backend})


def vllm_cfg(model: Path, batch_size: int):
    return config({"type": "vllm", "model": str(model), "device": "cpu", "max_model_len": 4096,
                   "max_pixels": MAX_PIXELS, "gpu_memory_utilization": MEM, "batch_size": batch_size})


def bare_engine(model: Path, table: pa.Table, warmup: pa.Table) -> dict[str, Any]:
    from vllm import LLM

    from rayrg.rewards.rgvlm.backends._http import to_openai_messages
    from rayrg.rewards.rgvlm.backends.vllm import engine_kwargs, sampling_kwargs, sampling_params
    from rayrg.rewards.rgvlm.pipeline import build_query
    from rayrg.rewards.rgvlm.prompts import scores_schema

    cfg = vllm_cfg(model, table.num_rows)
    t0 = time.perf_counter()
    llm = LLM(**engine_kwargs(cfg.backend, cfg.decoding))
    start_s = time.perf_counter() - t0
    p1 = sampling_params(sampling_kwargs(cfg.decoding, DECODING["max_tokens_analysis"], None))
    p2 = sampling_params(sampling_kwargs(cfg.decoding, DECODING["max_tokens_scores"], scores_schema(8)))

    def both_turns(t: pa.Table) -> tuple[list, list]:
        queries = [build_query(row, cfg) for row in t.to_pylist()]
        first = llm.chat([to_openai_messages(q.turn1()) for q in queries], p1, use_tqdm=False)
        second = llm.chat([to_openai_messages(q.turn2(o.outputs[0].text)) for q, o in zip(queries, first, strict=True)],
                          p2, use_tqdm=False)
        return first, second

    t0 = time.perf_counter()
    both_turns(warmup)
    warm_s = time.perf_counter() - t0
    t0, cpu = time.perf_counter(), cpu_seconds()
    first, second = both_turns(table)
    run_s, cpu = time.perf_counter() - t0, cpu_used(cpu)
    block = getattr(getattr(getattr(llm.llm_engine, "vllm_config", None), "cache_config", None), "block_size", None)
    vision_start = llm.get_tokenizer().convert_tokens_to_ids("<|vision_start|>")
    llm.llm_engine.engine_core.shutdown()

    def tokens(outs: list) -> tuple[int, int]:
        return sum(len(o.prompt_token_ids) for o in outs), sum(o.num_cached_tokens or 0 for o in outs)

    (p1_tok, c1), (p2_tok, c2) = tokens(first), tokens(second)
    return {"start_s": start_s, "warm_s": warm_s, "run_s": run_s, "block": block, "cpu": cpu,
            "turn1_prompt": p1_tok / len(first), "turn1_generated": sum(len(o.outputs[0].token_ids) for o in first) / len(first),
            "turn2_prompt": p2_tok / len(second), "turn1_cached": c1 / len(first), "turn2_cached": c2 / len(second),
            "before_image": first[0].prompt_token_ids.index(vision_start),
            "hit_rate": (c1 + c2) / (p1_tok + p2_tok)}


def _stamp(out: pa.Table, started: float) -> pa.Table:
    n = out.num_rows
    return (out.append_column("call_start", pa.array([started] * n, pa.float64()))
            .append_column("call_end", pa.array([time.time()] * n, pa.float64())))


class TimedLabeller(_pipeline._WindowLabeller):
    """rayrg's labeller plus when each call started and ended (epoch seconds on the actor; the
    driver is on the same machine). The driver cannot tell this itself: Ray Data buffers a
    task's outputs, so two batches of one actor can reach the driver together (that is what
    made the earlier first-batch timer report 40x)."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        started, cpu = time.time(), cpu_seconds()
        out = _stamp(super().__call__(batch), started)
        return out.append_column("call_cpu", pa.array([json.dumps(cpu_used(cpu))] * out.num_rows))


class TimedAsyncLabeller(_pipeline._AsyncWindowLabeller):
    async def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.time()
        return _stamp(await super().__call__(batch), started)


def timed_pipeline(cfg, source: pa.Table | list[pa.Table]) -> tuple[float, float, pa.Table]:
    """``label_windows`` with the timed labellers; (submit, all answers back) on the driver's
    clock and the labels with call_start / call_end."""
    import ray

    saved = _pipeline._WindowLabeller, _pipeline._AsyncWindowLabeller
    with tempfile.TemporaryDirectory() as cache:
        _pipeline._WindowLabeller, _pipeline._AsyncWindowLabeller = TimedLabeller, TimedAsyncLabeller
        try:
            submitted = time.time()
            ds = _pipeline.label_windows(ray.data.from_arrow(source), cfg, Path(cache))
        finally:
            _pipeline._WindowLabeller, _pipeline._AsyncWindowLabeller = saved
        labels = pa.concat_tables(list(ds.iter_batches(batch_format="pyarrow", batch_size=None)))
        back = time.time()
    expected = sum(t.num_rows for t in source) if isinstance(source, list) else source.num_rows
    assert labels.num_rows == expected, "rows missing"
    return submitted, back, labels


def calls_of(labels: pa.Table, ids: set[str]) -> tuple[float, float, pa.Table]:
    """(first call start, last call end, rows) of the windows ``ids``."""
    rows = labels.filter(pc.is_in(labels.column("window_id"), pa.array(sorted(ids))))
    assert rows.num_rows == len(ids), "windows missing"
    return (pc.min(rows.column("call_start")).as_py(), pc.max(rows.column("call_end")).as_py(),
            rows)


def through_ray_data_vllm(model: Path, table: pa.Table, warmup: pa.Table) -> dict[str, Any]:
    """(b): one dataset of two blocks (warm-up, measured), batch_size one block, one actor."""
    submitted, back, labels = timed_pipeline(vllm_cfg(model, table.num_rows), [warmup, table])
    (ws, we, first), (ms, me, rows) = (calls_of(labels, set(t.column("window_id").to_pylist()))
                                       for t in (warmup, table))
    if (ws, we) > (ms, me):  # both blocks are alike; whichever the actor ran first is the warm-up
        (ws, we, first), (ms, me, rows) = (ms, me, rows), (ws, we, first)
    if ms < we:
        raise SystemExit("(b): warm-up and measured windows overlapped in one call; no run figure")
    engine_s = float(pc.sum(rows.column("latency_s")).as_py())  # label_batch: engine time / window
    return {"start_s": we - submitted, "run_s": me - we, "handoff_s": ms - we, "call_s": me - ms,
            "engine_s": engine_s, "delivery_s": back - me, "cpu": json.loads(rows.column("call_cpu")[0].as_py())}


# The benchmark's own process: Ray actors find it here (they inherit the environment).
DRIVER_PID_ENV = "RAYRG_BENCH_DRIVER_PID"


def cpu_seconds() -> dict[tuple[str, int], float]:
    """CPU seconds (user + system) used so far by each process, keyed (group, pid). Groups:
    vllm serve's API process and its engine (the rest of its session); the calling process and
    its child processes (an in-process engine's core process); the benchmark's driver (when
    called from an actor); Ray's processes (GCS, raylet, dashboard, other workers); the rest."""
    import psutil

    me = os.getpid()
    driver = int(os.environ.get(DRIVER_PID_ENV, me))
    children = {c.pid for c in psutil.Process(me).children(recursive=True)}
    procs = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            times, sid = proc.cpu_times(), os.getsid(proc.pid)
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
        procs.append((proc.pid, sid, " ".join(proc.info["cmdline"] or []), times.user + times.system))
    server_sessions = {sid for _, sid, cmd, _ in procs if "vllm.entrypoints" in cmd}
    out = {}
    for pid, sid, cmd, seconds in procs:
        group = (("vllm API process" if "vllm.entrypoints" in cmd else "vllm engine") if sid in server_sessions
                 else "this process" if pid == me else "driver" if pid == driver
                 # Ray's processes before children: the driver started the local cluster
                 else "Ray" if cmd.startswith("ray::") or "/ray/" in cmd
                 else "its child processes" if pid in children else "other")
        out[(group, pid)] = seconds
    return out


def cpu_used(before: dict[tuple[str, int], float]) -> dict[str, float]:
    """CPU seconds per group since ``before`` (a :func:`cpu_seconds`), per process: a process
    that exited in between drops out (what it used since is lost, never counted negative)."""
    used: dict[str, float] = {}
    for (group, pid), seconds in cpu_seconds().items():
        used[group] = used.get(group, 0.0) + seconds - before.get((group, pid), 0.0)
    return {group: round(seconds, 2) for group, seconds in sorted(used.items())}


def through_openai(cfg, table: pa.Table, warmup: pa.Table) -> dict[str, Any]:
    """(c): a warm-up pipeline, then the measured one (its own light actor)."""
    s0, b0, _ = timed_pipeline(cfg, warmup)
    cpu = cpu_seconds()
    submitted, back, labels = timed_pipeline(cfg, table)
    cpu = cpu_used(cpu)
    start, end, rows = calls_of(labels, set(table.column("window_id").to_pylist()))
    return {"warm_s": b0 - s0, "pipeline_start_s": start - submitted, "run_s": end - start,
            "wall_s": back - submitted, "delivery_s": back - end, "labels": rows,
            "calls": len(set(rows.column("call_start").to_pylist())), "cpu": cpu}


def raw_client(cfg, table: pa.Table, warmup: pa.Table) -> dict[str, Any]:
    """(d): the same two requests per window from a bare aiohttp client, all windows at once."""
    import asyncio

    import aiohttp

    from rayrg.rewards.rgvlm.backends.openai_http import OpenAIBackend
    from rayrg.rewards.rgvlm.pipeline import build_query
    from rayrg.rewards.rgvlm.prompts import scores_schema

    backend = OpenAIBackend(cfg.backend, cfg.decoding)  # only for its request bodies
    url = backend.url

    async def window(session: aiohttp.ClientSession, q) -> None:
        body = backend.request_body(q.turn1(), None, DECODING["max_tokens_analysis"])
        async with session.post(url, json=body) as r:
            first = (await r.json())["choices"][0]["message"]["content"] or ""
        body = backend.request_body(q.turn2(first), scores_schema(q.num_steps), DECODING["max_tokens_scores"])
        async with session.post(url, json=body) as r:
            assert r.status == 200, await r.text()
            await r.read()

    async def run(t: pa.Table) -> float:
        queries = [build_query(row, cfg) for row in t.to_pylist()]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=len(queries))) as session:
            t0 = time.perf_counter()
            await asyncio.gather(*(window(session, q) for q in queries))
            return time.perf_counter() - t0

    try:
        warm_s = asyncio.run(run(warmup))
        cpu = cpu_seconds()
        return {"warm_s": warm_s, "run_s": asyncio.run(run(table)), "cpu": cpu_used(cpu)}
    finally:
        backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=256)
    parser.add_argument("--compare-serve-flags", action="store_true",
                        help="also time (c) and (d) against vllm serve without rayrg's lean flags and env")
    parser.add_argument("--skip-vllm-backend", action="store_true", help="leave out (b) (Ray Data + vllm backend)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from rayrg.models.tiny_qwen2vl import build_tiny_qwen2vl
    from rayrg.rewards.rgvlm.pipeline import summarize
    from rayrg.rewards.rgvlm.vllm_serve import LEAN_ARGS, vllm_server
    from rayrg.runtime import init_ray, quiet_ray_data

    work = Path(tempfile.mkdtemp(prefix="bench_vllm_"))
    model = build_tiny_qwen2vl(work / "tiny")
    n = args.windows
    # warm-up windows: as many as measured ones, different images (no prefix-cache help)
    table, warmup = windows(n), windows(2 * n).slice(n)
    # (d) runs on the server (c) just ran on: its measured windows must be ones that server has
    # not seen, or vLLM's prefix cache serves their images from (c)'s run (that made (d) look
    # faster and rayrg's client slower than they are)
    unseen = windows(3 * n).slice(2 * n)

    a = bare_engine(model, table, warmup)
    wps_a = n / a["run_s"]
    print(f"(a) bare LLM.chat, both turns batched: engine start {a['start_s']:.1f} s, warm-up {a['warm_s']:.2f} s, "
          f"run {a['run_s']:.2f} s, {wps_a:.2f} windows/s", flush=True)
    print(f"    CPU seconds in the run: {a['cpu']}", flush=True)
    print(f"    prefix cache (block {a['block']} tokens): turn 1 prompt {a['turn1_prompt']:.0f} tokens "
          f"({a['before_image']} before the image), {a['turn1_generated']:.0f} generated, "
          f"cached {a['turn1_cached']:.0f}; turn 2 prompt {a['turn2_prompt']:.0f}, cached {a['turn2_cached']:.0f} "
          f"({a['turn2_cached'] / a['turn2_prompt']:.2f}); both turns {a['hit_rate']:.2f}", flush=True)

    os.environ[DRIVER_PID_ENV] = str(os.getpid())
    init_ray(num_cpus=2)
    quiet_ray_data()
    wps_b = float("nan")
    if not args.skip_vllm_backend:
        b = through_ray_data_vllm(model, table, warmup)
        wps_b = n / b["run_s"]
        print(f"(b) rayrg vllm backend on Ray Data: start + warm-up {b['start_s']:.1f} s, run {b['run_s']:.2f} s, "
              f"{wps_b:.2f} windows/s", flush=True)
        print(f"    run = Ray Data hand-off {b['handoff_s']:.3f} s + labeller call {b['call_s']:.2f} s, of which "
              f"engine (both LLM.chat) {b['engine_s']:.2f} s; results to the driver {b['delivery_s']:.3f} s after",
              flush=True)
        print(f"    CPU seconds in the labeller call ('this process' is the actor): {b['cpu']}", flush=True)

    serve_args = ["--max-model-len", "4096", "--enable-prefix-caching", "--enable-prompt-tokens-details",
                  "--gpu-memory-utilization", str(MEM), "--limit-mm-per-prompt", '{"image": 1}',
                  "--mm-processor-kwargs", json.dumps({"max_pixels": MAX_PIXELS}),
                  "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}']
    if args.compare_serve_flags:  # the same (c) and (d) against vLLM's default server first
        with vllm_server(model, "tiny", work / "serve-default.log", serve_args, lean=False) as plain:
            cfg_p = config({"type": "openai", "base_url": f"{plain.base}/v1", "model": "tiny",
                            "max_in_flight": n, "max_retries": 1})
            c0, d0 = through_openai(cfg_p, table, warmup), raw_client(cfg_p, unseen, warmup)
    with vllm_server(model, "tiny", work / "serve.log", serve_args) as server:
        # all n windows in flight at once, like (a)'s one batch
        cfg_c = config({"type": "openai", "base_url": f"{server.base}/v1", "model": "tiny",
                        "max_in_flight": n, "max_retries": 1})
        c = through_openai(cfg_c, table, warmup)
        d = raw_client(cfg_c, unseen, warmup)
    wps_c = n / c["run_s"]
    sc = summarize(c["labels"], c["run_s"])
    print(f"(c) rayrg openai backend over vllm serve: server start {server.start_s:.1f} s, warm-up pipeline "
          f"{c['warm_s']:.1f} s, run {c['run_s']:.2f} s, {wps_c:.2f} windows/s", flush=True)
    print(f"    run = {c['calls']} labeller call(s), {2 * n} HTTP requests, {n} windows in flight; mean window "
          f"latency {float(pc.mean(c['labels'].column('latency_s')).as_py()):.2f} s "
          f"(longest {float(pc.max(c['labels'].column('latency_s')).as_py()):.2f} s); outside the run: "
          f"pipeline + actor start {c['pipeline_start_s']:.2f} s, results to the driver {c['delivery_s']:.3f} s "
          f"(submit to last answer {c['wall_s']:.2f} s = {n / c['wall_s']:.2f} windows/s); "
          f"prefix-cache hit rate {sc['prefix_cache_hit_rate']:.2f}", flush=True)
    print(f"    CPU seconds from submit to last answer ({c['wall_s']:.2f} s wall, 2 cores): {c['cpu']}", flush=True)
    wps_d = n / d["run_s"]
    print(f"(d) raw aiohttp client over vllm serve (plain process): warm-up {d['warm_s']:.2f} s, "
          f"run {d['run_s']:.2f} s, {wps_d:.2f} windows/s", flush=True)
    print(f"    CPU seconds in the run: {d['cpu']}", flush=True)
    print(json.dumps({"windows": n, "bare_wps": round(wps_a, 3), "rayrg_vllm_wps": round(wps_b, 3),
                      "openai_serve_wps": round(wps_c, 3), "raw_client_serve_wps": round(wps_d, 3)}))
    print(f"vllm backend vs bare engine: {wps_b / wps_a:.2f}x")
    print(f"openai backend over vllm serve vs bare engine: {wps_c / wps_a:.2f}x")
    print(f"  raw aiohttp client over vllm serve vs bare engine (the server's HTTP layer): {wps_d / wps_a:.2f}x")
    print(f"  openai backend vs raw aiohttp client, same server (rayrg's client + Ray Data): {wps_c / wps_d:.2f}x")
    if args.compare_serve_flags:
        wps_c0, wps_d0 = n / c0["run_s"], n / d0["run_s"]
        print(f"before ({' '.join(LEAN_ARGS)}, VLLM_CPU_OMP_THREADS_BIND=nobind off):")
        print(f"  openai backend over vllm serve vs bare engine: {wps_c0 / wps_a:.2f}x")
        print(f"  raw aiohttp client over vllm serve vs bare engine (the server's HTTP layer): {wps_d0 / wps_a:.2f}x")
        print(f"  openai backend vs raw aiohttp client, same server (rayrg's client + Ray Data): "
              f"{wps_c0 / wps_d0:.2f}x")
        print(f"lean vllm serve vs vLLM's default server, raw client: {wps_d / wps_d0:.2f}x; "
              f"openai backend: {wps_c / wps_c0:.2f}x")


if __name__ == "__main__":  # vLLM spawns processes
    main()
