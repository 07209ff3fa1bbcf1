"""RG-VLM labelling throughput against a loopback chat server vs the concurrency bound.

A window is two sequential requests (turn 1, then turn 2), each answered after an
injected latency L, so one window occupies one of the C in-flight slots for 2L: the best
any client can do is C / (2L) windows per second. This benchmark runs the real path — Ray
Data ``label_windows`` (repartition → map_batches(labeller) → materialize) with the OpenAI-compatible
backend, cache writes included — on synthetic grid windows and prints

    RG-VLM labelling vs the concurrency bound C/(2L): R (goal >= 0.9)

(R = measured windows/s ÷ C/(2L); equivalently requests/s ÷ C/L). An actor warm-up run is
left out of the timing; materialisation is inside it.

``--slow-rate p --slow-delay d`` answers a fraction p of requests after L + d instead
(stragglers: a retried 429 behaves like this); the bound then uses the mean latency L + p·d.

    python benchmarks/bench_label_http.py [--latency 0.5] [--concurrency 64] [--windows 2048]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa

from rayrg.rewards.rgvlm.config import RGVLMConfig
from rayrg.rewards.rgvlm.loopback import Faults, LoopbackServer
from rayrg.windows.schema import WINDOW_SCHEMA
from tests.rewards._rgvlm_helpers import window_row


def label_once(config: RGVLMConfig, rows: list[dict], cache_dir: Path) -> tuple[float, int]:
    import ray

    from rayrg.rewards.rgvlm.pipeline import label_windows

    ds = ray.data.from_arrow(pa.Table.from_pylist(rows, schema=WINDOW_SCHEMA))
    start = time.perf_counter()
    labelled = label_windows(ds, config, cache_dir).materialize()
    elapsed = time.perf_counter() - start
    statuses = [s for t in ray.get(labelled.to_arrow_refs()) for s in t.column("status").to_pylist()]
    return elapsed, statuses.count("ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.5, help="L: seconds per request")
    parser.add_argument("--concurrency", type=int, default=64, help="C: windows in flight")
    parser.add_argument("--windows", type=int, default=2048, help="ideal time 2L·windows/C: 32 s by default")
    parser.add_argument("--slow-rate", type=float, default=0.0,
                        help="fraction of requests answered after --slow-delay instead of L (stragglers)")
    parser.add_argument("--slow-delay", type=float, default=2.5)
    args = parser.parse_args()

    from rayrg.runtime import init_ray

    init_ray(num_cpus=2)
    rows = [window_row(i, size=56) for i in range(args.windows)]
    faults = Faults(latency_s=args.latency, timeout_rate=args.slow_rate, timeout_delay_s=args.slow_delay)
    with LoopbackServer(faults) as server, tempfile.TemporaryDirectory() as tmp:
        config = RGVLMConfig.from_dict({"backend": {
            "type": "openai", "base_url": server.base_url, "model": "loopback", "max_in_flight": args.concurrency}})
        label_once(config, [window_row(10**6 + i, size=56) for i in range(8)], Path(tmp) / "warm")
        server.stats.first_request_at = None
        elapsed, ok = label_once(config, rows, Path(tmp) / "cache")
        steady = server.stats.last_answer_at - server.stats.first_request_at
    # mean request latency: L, plus the stragglers' extra delay (answered after L + slow_delay)
    latency = args.latency + args.slow_rate * args.slow_delay
    bound = args.concurrency / (2 * latency)
    rate = args.windows / elapsed
    print(f"windows={args.windows} labelled={ok} C={args.concurrency} L={args.latency}s "
          f"stragglers={args.slow_rate:.0%}x{args.slow_delay}s "
          f"time={elapsed:.2f}s windows/s={rate:.1f} bound C/(2L)={bound:.1f}")
    print(f"RG-VLM labelling vs the concurrency bound C/(2L): {rate / bound:.2f} (goal >= 0.9), "
          f"steady state (first request to last answer, {steady:.2f}s): {args.windows / steady / bound:.2f}")


if __name__ == "__main__":
    main()
