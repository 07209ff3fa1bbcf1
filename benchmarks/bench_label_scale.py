"""RG-VLM labelling at ALFRED size: throughput, memory and the all-hit re-run.

Labels N synthetic windows (default 50,000 ≈ 100k chat turns) through the production path —
Parquet windows → Ray Data ``label_windows`` (async OpenAI-backend actors, answer cache) →
``write_parquet`` — against the loopback chat server (C windows in flight, L s per request,
a fraction p of requests answered d s later: stragglers), at a small size first (default
N/10) for the memory reference, then prints

    RG-VLM labelling at N windows vs the concurrency bound C/(2·L_mean): R (goal >= 0.9)
    peak RSS at N vs at N/10 windows: driver R1, rayrg workers R2 (goal <= 1.3)
    re-run of N windows with every answer cached: T s, B backend calls (goal <= 60 s and 0)

L_mean = L + p·d, each window holds one slot for two requests. Peak RSS is sampled every
0.2 s: the driver, and the sum over ``ray::`` worker processes of this benchmark's own cluster
(not GCS, raylet, dashboard, agents or Ray Data's helper actors). Synthetic windows are written to Parquet in
chunks first, so the driver holds none of them.

    python benchmarks/bench_label_scale.py [--windows 50000] [--small 5000] [--concurrency 256]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from rayrg.rewards.rgvlm.config import RGVLMConfig
from rayrg.rewards.rgvlm.loopback import Faults, LoopbackServer
from rayrg.windows.schema import WINDOW_SCHEMA
from tests.rewards._rgvlm_helpers import window_row

# Ray's own processes (and Ray Data's helper actors) are not rayrg's: not what this watches.
_RAY_SYSTEM = ("DashboardAgent", "RuntimeEnvAgent", "ActorLocationTracker", "_AutoscalingCoordinatorActor",
               "_StatsActor")


class RSSSampler:
    """Peak RSS of this process and peak summed RSS of the Ray worker processes."""

    def __init__(self, period_s: float = 0.2) -> None:
        self.period_s = period_s
        self.driver_peak = self.workers_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _is_worker(proc: psutil.Process) -> bool:
        try:
            cmd = " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return False
        return cmd.startswith("ray::") and not any(s in cmd for s in _RAY_SYSTEM)

    def sample(self) -> None:
        me = psutil.Process()
        self.driver_peak = max(self.driver_peak, me.memory_info().rss)
        total = 0
        # only this benchmark's cluster (its raylet's workers descend from this process):
        # other Ray clusters on the machine are not counted
        for proc in me.children(recursive=True):
            if self._is_worker(proc):
                try:
                    total += proc.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
        self.workers_peak = max(self.workers_peak, total)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.sample()

    def __enter__(self) -> RSSSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def write_windows(directory: Path, n: int, offset: int, chunk: int = 2000) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for i, lo in enumerate(range(0, n, chunk)):
        rows = [window_row(offset + j, size=16) for j in range(lo, min(n, lo + chunk))]
        pq.write_table(pa.Table.from_pylist(rows, schema=WINDOW_SCHEMA), directory / f"part-{i:05d}.parquet")
    return directory


def label_once(config: RGVLMConfig, windows: Path, cache_dir: Path, out: Path) -> tuple[float, int, int]:
    """(seconds, windows ok, backend calls) for one labelling run, written like ``rayrg label``."""
    import ray

    from rayrg.rewards.rgvlm.pipeline import _WINDOW_INPUT, label_windows

    start = time.perf_counter()
    ds = ray.data.read_parquet(str(windows), columns=_WINDOW_INPUT)
    label_windows(ds, config, cache_dir).write_parquet(str(out))
    elapsed = time.perf_counter() - start
    labels = pq.read_table(out, columns=["status", "backend_calls"])
    return elapsed, labels.column("status").to_pylist().count("ok"), pa.compute.sum(labels.column("backend_calls")).as_py()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=50_000)
    parser.add_argument("--small", type=int, default=None, help="memory reference size (default windows/10)")
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--slow-rate", type=float, default=0.05)
    parser.add_argument("--slow-delay", type=float, default=2.5)
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()
    small = args.small or max(1, args.windows // 10)

    import pyarrow.compute  # noqa: F401 - pa.compute in label_once

    from rayrg.runtime import init_ray, quiet_ray_data

    init_ray(num_cpus=args.num_cpus)
    quiet_ray_data()
    faults = Faults(latency_s=args.latency, timeout_rate=args.slow_rate, timeout_delay_s=args.slow_delay)
    latency = args.latency + args.slow_rate * args.slow_delay
    bound = args.concurrency / (2 * latency)
    with LoopbackServer(faults) as server, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = RGVLMConfig.from_dict({"backend": {
            "type": "openai", "base_url": server.base_url, "model": "loopback", "max_in_flight": args.concurrency}})
        t0 = time.perf_counter()
        small_dir = write_windows(tmp / "small", small, offset=10**7)
        big_dir = write_windows(tmp / "big", args.windows, offset=0)
        print(f"wrote {small} + {args.windows} synthetic windows in {time.perf_counter() - t0:.1f}s", flush=True)
        # warm-up (actor start, imports) outside every figure
        label_once(config, write_windows(tmp / "warm", 8, offset=10**8), tmp / "warm_cache", tmp / "warm_out")

        runs = {}
        for name, directory in (("small", small_dir), ("big", big_dir)):
            server.stats.first_request_at = None
            area = server.stats.occupancy()
            with RSSSampler() as rss:
                elapsed, ok, calls = label_once(config, directory, tmp / f"cache_{name}", tmp / f"out_{name}")
            occupancy = (server.stats.occupancy() - area) / elapsed
            runs[name] = (elapsed, ok, calls, rss.driver_peak, rss.workers_peak)
            n = small if name == "small" else args.windows
            print(f"{n} windows: {elapsed:.1f}s labelled={ok} calls={calls} windows/s={n / elapsed:.1f} "
                  f"bound={bound:.1f} driver peak RSS={rss.driver_peak / 2**20:.0f} MiB "
                  f"workers peak RSS={rss.workers_peak / 2**20:.0f} MiB "
                  f"load={psutil.getloadavg()[0]:.2f} mean requests in flight at the server={occupancy:.0f} "
                  f"of C={args.concurrency}", flush=True)
        calls_before = server.stats.requests
        with RSSSampler() as rss:
            rerun_s, rerun_ok, rerun_calls = label_once(config, big_dir, tmp / "cache_big", tmp / "out_rerun")
        sent = server.stats.requests - calls_before
        print(f"re-run {args.windows} windows: {rerun_s:.1f}s labelled={rerun_ok} requests seen by server={sent} "
              f"workers peak RSS={rss.workers_peak / 2**20:.0f} MiB", flush=True)

    elapsed, ok, *_ = runs["big"]
    print(f"RG-VLM labelling at {args.windows} windows vs the concurrency bound C/(2·L_mean): "
          f"{args.windows / elapsed / bound:.2f} (goal >= 0.9) [C={args.concurrency} L={args.latency}s "
          f"stragglers={args.slow_rate:.0%}x{args.slow_delay}s, {ok} labelled]")
    print(f"peak RSS at {args.windows} vs at {small} windows: driver {runs['big'][3] / runs['small'][3]:.2f}, "
          f"rayrg workers {runs['big'][4] / max(1, runs['small'][4]):.2f} (goal <= 1.3)")
    print(f"re-run of {args.windows} windows with every answer cached: {rerun_s:.1f} s, "
          f"{rerun_calls} backend calls, {sent} requests at the server (goal <= 60 s and 0)")


if __name__ == "__main__":
    main()
