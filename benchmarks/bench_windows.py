"""Windows composed per second vs a PNG-encode-only baseline, measured in the same run.

Both sides start from the same 8 decoded 56x56 BabyAI frames per window:
* baseline: PNG-encode the 8 frames (what writing the frames alone costs);
* rayrg:    compose the labelled 4x2 grid (2x upscaled) and PNG-encode it, as the windows
            stage does per window (plus the Ray Data end-to-end rate for reference).

Prints "window composition vs PNG-encode-only: R×" (R > 1: composing a window costs less
than encoding its frames separately).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rayrg.data.generate import GenerateConfig, rollout_episode
from rayrg.data.schema import decode_png, encode_png
from rayrg.envs.babyai import BabyAIEnvConfig
from rayrg.windows.grid import compose_grid


def _rate(fn, items, repeats: int = 3) -> float:
    fn(items[:4])  # warm-up (fonts, PIL codecs)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        fn(items)
        best = max(best, len(items) / (time.perf_counter() - start))
    return best


def main() -> None:
    rows = []
    for seed in range(6):
        rows.extend(rollout_episode(4, seed, 0.15, 200, BabyAIEnvConfig())[0])
    frames = [decode_png(r["frame"]) for r in rows]
    windows = [frames[i:i + 8] for i in range(0, len(frames) - 7, 8)]
    steps = list(range(8))

    def encode_only(ws):
        for w in ws:
            for f in w:
                encode_png(f)

    def compose(ws):
        for w in ws:
            encode_png(compose_grid(w, steps, 8))

    base = _rate(encode_only, windows)
    ours = _rate(compose, windows)
    print(f"windows: {len(windows)} of 8 frames (56x56)")
    print(f"PNG-encode-only baseline: {base:,.0f} windows/s ({8 * base:,.0f} frames/s)")
    print(f"grid composition + encode: {ours:,.0f} windows/s")
    print(f"window composition vs PNG-encode-only: {ours / base:.2f}x")

    # End to end through the Ray Data stage (includes Ray start-up and Parquet I/O).
    from rayrg.data.generate import generate
    from rayrg.windows.build import WindowConfig, make_windows

    with tempfile.TemporaryDirectory() as tmp:
        generate(GenerateConfig(episodes_per_count=8, eval_tasks_per_count=0), tmp, progress=False)
        start = time.perf_counter()
        out = make_windows(Path(tmp) / "trajectories", Path(tmp) / "w", WindowConfig())
        elapsed = time.perf_counter() - start
        import json

        n = json.loads((out / "_windows.json").read_text())["windows"]
        print(f"Ray Data windows stage end to end: {n / elapsed:,.0f} windows/s ({n} windows, {elapsed:.1f} s)")


if __name__ == "__main__":
    main()
