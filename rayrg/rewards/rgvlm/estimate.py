"""What an RG-VLM labelling run will cost, before any call: ``rayrg estimate``.

::

    dataset ─(scalar columns only: episode_id, step, instruction, action_name)─► windows
       (window_bounds, as the windows stage cuts them; the grid's size from one frame's PNG
        header and the window layout, so no frame is decoded and no grid drawn)
    per window: the rendered prompts ─► text tokens (the backend's tokenizer when local,
       else characters / 4), plus the tokens its chat template adds (local checkpoints);
       the grid ─► image tokens (the backend config's own rule)
    turn 1: system + image + analysis prompt               ─► output O1
    turn 2: turn 1 + O1 + scores prompt, re-asked while it does not parse ─► output O2

Expected turn-2 requests per window, with ``p`` the share of turn-2 answers that do not
parse and ``A`` = ``max_parse_attempts``: ``1 + p + … + p^(A-1)``. Without a measurement
``p`` is 0 and O1, O2 are the output budgets (``max_tokens_*``): an upper bound on output
tokens. ``--measure N`` labels N windows for real (the pipeline's :func:`label_windows`, into
a temporary directory and a temporary answer cache, so they are asked and paid for) and
takes ``p``, O1, O2 and the mean window latency from them.

Wall time is the largest of three floors: the windows in flight (``max_in_flight`` ×
``num_actors``) times the window latency, ``requests_per_minute``, and ``tokens_per_minute``
as the rate limiter charges requests (:func:`~rayrg.rewards.rgvlm.backends.base.limiter_tokens`).
Ray start-up and the windows stage are not in it. Answers already in the cache are counted
as if asked (the estimate assumes an empty cache).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from rayrg.config import ConfigError
from rayrg.data.access import Dataset, episode_ends
from rayrg.rewards.rgvlm.backends import backend_class
from rayrg.rewards.rgvlm.backends.base import limiter_tokens, png_size
from rayrg.rewards.rgvlm.config import RGVLMConfig
from rayrg.rewards.rgvlm.pipeline import capped_size
from rayrg.rewards.rgvlm.prompts import render
from rayrg.windows.build import window_bounds
from rayrg.windows.grid import actions_text, grid_size

log = logging.getLogger(__name__)

TURN1_REQUESTS = 1


def expected_turn2_requests(invalid_rate: float, max_parse_attempts: int) -> float:
    """Expected turn-2 requests of one window: attempt k+1 happens when k answers failed to
    parse, so the sum of ``p^k`` for k < ``max_parse_attempts``."""
    p = min(max(invalid_rate, 0.0), 1.0)
    return float(sum(p ** k for k in range(max_parse_attempts)))


def requests_per_window(config: RGVLMConfig, invalid_rate: float = 0.0) -> float:
    """Model calls per window: turn 1, plus turn 2 and its expected re-asks."""
    return TURN1_REQUESTS + expected_turn2_requests(invalid_rate, config.max_parse_attempts)


@dataclass(frozen=True)
class WindowText:
    instruction: str
    actions_text: str
    start_step: int
    num_steps: int


def _windows_from_dataset(config: RGVLMConfig, dataset: Path) -> tuple[list[WindowText], tuple[int, int]]:
    """The windows the windows stage would cut, from the scalar columns alone, and the size of
    one frame (a dataset's frames share one size) read from its PNG header."""
    ds = Dataset.open(dataset)
    table = ds.read(["episode_id", "step", "instruction", "action_name"])  # structure-checked
    w = config.windows
    ends = np.flatnonzero(episode_ends(table.column("episode_id"))) + 1
    instructions = table.column("instruction").to_pylist()
    names = table.column("action_name").to_pylist()
    out: list[WindowText] = []
    start = 0
    for end in ends:
        n = int(end) - start
        for a, b in window_bounds(n, w.window_size, w.effective_stride, w.last_window):
            out.append(WindowText(instructions[start], actions_text(range(a, b), names[start + a:start + b]),
                                  a, b - a))
        start = int(end)
    first = ds.read_shard(ds.shards[0], ["frame"], validate=False).column("frame")[0].as_py()
    frame_w, frame_h = png_size(first)
    return out, (frame_w, frame_h)


def _windows_from_windows_dir(windows_dir: Any) -> tuple[list[WindowText], tuple[int, int]]:
    from rayrg.contracts.windows import head_windows, read_windows

    table = read_windows(windows_dir, ["instruction", "actions_text", "start_step", "num_steps"])
    out = [WindowText(i, t, int(s), int(n)) for i, t, s, n in zip(
        *(table.column(c).to_pylist() for c in table.column_names), strict=True)]
    image = head_windows(windows_dir, 1, ["image"]).column("image")[0].as_py()
    return out, png_size(image)


@dataclass
class Measured:
    """From ``--measure N``: N windows labelled for real."""

    windows: int
    failed: int
    mean_window_latency_s: float
    invalid_answer_rate: float  # turn-2 answers that did not parse / turn-2 answers
    turn1_output_tokens: float  # mean
    turn2_output_tokens: float  # mean per turn-2 answer
    backend_calls: int
    input_tokens: int  # as the backend reported them
    estimated_input_tokens: int  # this estimate's rule for the same windows, for comparison
    wall_s: float


@dataclass
class Estimate:
    backend: str
    model: str
    windows: int
    image_size: tuple[int, int]  # (width, height) as sent
    image_tokens: int  # per image
    text_counting: str
    requests: float
    requests_per_window: float
    turn1_input_tokens: float  # mean per request
    turn2_input_tokens: float  # mean per request
    input_tokens: float
    output_tokens: float
    output_basis: str
    cost_usd: float
    price_input_per_mtok: float
    price_output_per_mtok: float
    windows_in_flight: int
    window_latency_s: float | None
    latency_basis: str
    wall_s: float | None
    wall_floors: dict[str, float] = field(default_factory=dict)
    measured: Measured | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The printout (one fact a line)."""
        w, h = self.image_size
        out = [
            f"estimate: {self.backend} {self.model}",
            f"  windows: {self.windows}",
            f"  requests: {self.requests:,.0f} ({self.requests_per_window:.3f} per window: turn 1 + turn 2"
            f"{' and its expected re-asks' if self.requests_per_window > 2 else ''})",
            f"  image: {w}x{h} px -> {self.image_tokens} tokens ({self.backend}'s rule)",
            f"  input tokens per request: turn 1 {self.turn1_input_tokens:,.0f}, turn 2 {self.turn2_input_tokens:,.0f}"
            f" (text: {self.text_counting})",
            f"  input tokens: {self.input_tokens:,.0f}",
            f"  output tokens: {self.output_tokens:,.0f} ({self.output_basis})",
            f"  cost: ${self.cost_usd:,.4f} at ${self.price_input_per_mtok:g} / "
            f"${self.price_output_per_mtok:g} per 1M input / output tokens",
        ]
        floors = ", ".join(f"{k} {_duration(v)}" for k, v in self.wall_floors.items())
        if self.wall_s is None:
            out.append("  wall time: unknown without a latency (--latency-s or --measure N)"
                       + (f"; at least {floors}" if floors else ""))
        else:
            out.append(f"  wall time: {_duration(self.wall_s)} (the largest of: {floors}; "
                       f"{self.windows_in_flight} windows in flight, {self.latency_basis})")
        m = self.measured
        if m is not None:
            out.append(f"  measured on {m.windows} windows in {m.wall_s:.1f} s: {m.backend_calls} requests, "
                       f"{m.failed} failed, invalid-answer rate {m.invalid_answer_rate:.3f}, "
                       f"{m.input_tokens:,} input tokens reported vs {m.estimated_input_tokens:,} by this estimate")
        return out


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def window_texts(config: RGVLMConfig, dataset: str | Path) -> tuple[list[WindowText], tuple[int, int]]:
    """The windows a run of ``config`` would label (``max_windows`` applied) and the (width,
    height) of their grid image as sent (after ``max_image_side``)."""
    if config.windows_dir:
        from rayrg.storage import open_input
        from rayrg.windows.staging import as_arg

        windows, image = _windows_from_windows_dir(as_arg(open_input(config.windows_dir)))
    else:
        windows, (fw, fh) = _windows_from_dataset(config, Path(dataset))
        w = config.windows
        image = grid_size(fh, fw, w.window_size, w.columns, w.frame_scale, w.label_height)
    if config.max_windows:
        windows = windows[:config.max_windows]
    return windows, capped_size(*image, config.max_image_side)


def _per_window(config: RGVLMConfig, windows: list[WindowText], count: Callable[[str], int]) -> Iterator[
        tuple[int, int, int, int]]:
    """(turn-1 text tokens, turn-2 extra text tokens, turn-1 chars, turn-2 extra chars) per window."""
    for w in windows:
        system, analysis, scores = render(config.prompt_version, w.instruction, w.actions_text, w.start_step,
                                          w.num_steps)
        yield count(system) + count(analysis), count(scores), len(system) + len(analysis), len(scores)


def estimate(config: RGVLMConfig, dataset: str | Path, latency_s: float | None = None,
             measured: Measured | None = None) -> Estimate:
    """The estimate for labelling ``dataset`` with ``config``; ``latency_s``: seconds per request;
    ``measured``: from :func:`measure` (its window latency wins over ``latency_s``)."""
    windows, (width, height) = window_texts(config, dataset)
    return _estimate(config, windows, width, height, latency_s, measured)


def _estimate(config: RGVLMConfig, windows: list[WindowText], width: int, height: int,
              latency_s: float | None, measured: Measured | None) -> Estimate:
    b, d = config.backend, config.decoding
    cls = backend_class(b.type)
    count, how = b.text_counter()
    image = b.image_tokens(width, height)
    p = measured.invalid_answer_rate if measured else 0.0
    turn2 = expected_turn2_requests(p, config.max_parse_attempts)
    if measured is not None:
        o1, o2 = measured.turn1_output_tokens, measured.turn2_output_tokens
        output_basis = f"measured means: turn 1 {o1:.0f}, turn 2 {o2:.0f} per answer"
    else:
        o1, o2 = float(d.max_tokens_analysis), float(d.max_tokens_scores)
        output_basis = f"at most: the budgets max_tokens_analysis {o1:.0f} + max_tokens_scores {o2:.0f}"
    n = len(windows)
    texts = np.array(list(_per_window(config, windows, count)), dtype=np.float64).reshape(n, 4)
    template1, template2 = b.template_tokens()
    t1 = texts[:, 0] + image + template1  # turn-1 input per window
    # turn-2 input: turn 1 again, its answer, the scores prompt, and the template around them
    t2 = t1 + o1 + texts[:, 1] + (template2 - template1)
    input_tokens = float(t1.sum() + turn2 * t2.sum())
    output_tokens = n * (o1 + turn2 * o2)
    requests = n * (TURN1_REQUESTS + turn2)
    cost = (input_tokens * b.price_input_per_mtok + output_tokens * b.price_output_per_mtok) / 1e6

    floors: dict[str, float] = {}
    rpm, tpm = getattr(b, "requests_per_minute", None), getattr(b, "tokens_per_minute", None)
    if rpm:
        floors["requests_per_minute"] = requests / rpm * 60
    if tpm:
        # as the limiter charges: the assistant text of turn 1 is ~4 characters per token
        charged = sum(limiter_tokens(int(c1), image, d.max_tokens_analysis)
                      + turn2 * limiter_tokens(int(c1 + 4 * o1 + c2), image, d.max_tokens_scores)
                      for c1, c2 in texts[:, 2:])
        floors["tokens_per_minute"] = charged / tpm * 60
    in_flight = cls.windows_in_flight(b)
    if measured is not None:
        window_latency: float | None = measured.mean_window_latency_s
        latency_basis = f"window latency {window_latency:.2f} s measured"
    elif latency_s is not None:
        window_latency = latency_s * (TURN1_REQUESTS + turn2)
        latency_basis = f"{latency_s:g} s per request given"
    else:
        window_latency, latency_basis = None, "no latency"
    if window_latency is not None:
        floors["concurrency"] = n * window_latency / in_flight
    wall = max(floors.values()) if window_latency is not None else None
    return Estimate(
        backend=b.type, model=b.model, windows=n, image_size=(width, height), image_tokens=image,
        text_counting=how, requests=requests, requests_per_window=TURN1_REQUESTS + turn2,
        turn1_input_tokens=float(t1.mean()) if n else 0.0, turn2_input_tokens=float(t2.mean()) if n else 0.0,
        input_tokens=input_tokens, output_tokens=output_tokens, output_basis=output_basis, cost_usd=cost,
        price_input_per_mtok=b.price_input_per_mtok, price_output_per_mtok=b.price_output_per_mtok,
        windows_in_flight=in_flight, window_latency_s=window_latency, latency_basis=latency_basis,
        wall_s=wall, wall_floors=floors, measured=measured)


def _first_windows(config: RGVLMConfig, dataset: Path, n: int) -> pa.Table:
    """The first ``n`` windows (WINDOW_SCHEMA), made by the windows stage's own code from as
    many leading shards as they need."""
    from rayrg.contracts.windows import WINDOW_SCHEMA, head_windows
    from rayrg.windows.build import _READ_COLUMNS, episode_windows

    if config.windows_dir:
        return head_windows(config.windows_dir, n)  # only the leading batches' images
    from rayrg.data.access import iter_episodes

    ds = Dataset.open(dataset)
    rows: list[dict[str, Any]] = []
    for shard in ds.shards:
        for episode in iter_episodes(ds.read_shard(shard, _READ_COLUMNS)):
            rows.extend(episode_windows(episode, config.windows))
            if len(rows) >= n:
                return pa.Table.from_pylist(rows[:n], schema=WINDOW_SCHEMA)
    return pa.Table.from_pylist(rows, schema=WINDOW_SCHEMA)


def measure(config: RGVLMConfig, dataset: str | Path, n: int, address: str | None = None) -> Measured:
    """Label the first ``n`` windows for real through :func:`~rayrg.rewards.rgvlm.pipeline.label_windows`
    (the labelling stage's Ray Data plan and backend) into a temporary directory with its own
    empty answer cache, so every one is asked: these requests are sent and paid for."""
    import ray

    from rayrg.contracts.labels import read_labels, write_labels
    from rayrg.errors import stage_errors
    from rayrg.rewards.rgvlm.pipeline import _WINDOW_INPUT, label_windows
    from rayrg.runtime import init_ray, quiet_ray_data

    if n < 1:
        raise ConfigError("--measure: the number of windows must be at least 1")
    backend_class(config.backend.type).preflight(config.backend, local=address in (None, "", "local"))
    windows = _first_windows(config, Path(dataset), n)
    if windows.num_rows == 0:
        raise ConfigError(f"{dataset}: no windows to measure")
    init_ray(address)
    quiet_ray_data()
    with tempfile.TemporaryDirectory(prefix="rayrg-estimate-") as tmp:
        start = time.perf_counter()
        ds = ray.data.from_arrow(windows.select(_WINDOW_INPUT))
        with stage_errors():
            write_labels(label_windows(ds, config, Path(tmp) / "_cache"), Path(tmp) / "_labels")
        wall = time.perf_counter() - start
        labels = read_labels(Path(tmp) / "_labels")
    count, _ = config.backend.text_counter()
    turn1 = [count(t) for t in labels.column("turn1_text").to_pylist() if t is not None]
    o1 = float(np.mean(turn1)) if turn1 else float(config.decoding.max_tokens_analysis)
    rows = labels.select(["turn1_text", "output_tokens", "attempts", "invalid_answers", "latency_s",
                          "backend_calls", "input_tokens", "status"]).to_pylist()
    per_answer = [(r["output_tokens"] - count(r["turn1_text"])) / r["attempts"] for r in rows
                  if r["attempts"] and r["turn1_text"] is not None]
    attempts = sum(r["attempts"] for r in rows)
    partial = Measured(
        windows=len(rows), failed=sum(r["status"] != "ok" for r in rows),
        mean_window_latency_s=float(np.mean([r["latency_s"] for r in rows])),
        invalid_answer_rate=sum(r["invalid_answers"] for r in rows) / max(1, attempts),
        turn1_output_tokens=o1,
        turn2_output_tokens=float(np.mean(per_answer)) if per_answer else float(config.decoding.max_tokens_scores),
        backend_calls=sum(r["backend_calls"] for r in rows), input_tokens=sum(r["input_tokens"] for r in rows),
        estimated_input_tokens=0, wall_s=wall)
    # the same windows through this estimate's rules: how far its token count is from the backend's
    texts = [WindowText(r["instruction"], r["actions_text"], int(r["start_step"]), int(r["num_steps"]))
             for r in windows.select(["instruction", "actions_text", "start_step", "num_steps"]).to_pylist()]
    width, height = capped_size(*png_size(windows.column("image")[0].as_py()), config.max_image_side)
    partial.estimated_input_tokens = round(_estimate(config, texts, width, height, None, partial).input_tokens)
    return partial


def estimate_cli(config: RGVLMConfig, dataset: str | Path, latency_s: float | None = None,
                 measure_windows: int | None = None, address: str | None = None) -> Estimate:
    measured = measure(config, dataset, measure_windows, address) if measure_windows else None
    return estimate(config, dataset, latency_s, measured)


def print_estimate(result: Estimate, as_json: bool = False) -> None:
    print(json.dumps(result.to_dict(), indent=2) if as_json else "\n".join(result.lines()), flush=True)


def confirm(config: RGVLMConfig, dataset: str | Path, stdin: Any, stdout: Any) -> bool:
    """Before a paid run: :func:`rayrg.rewards.declarations.confirm` of this estimate."""
    from rayrg.rewards.declarations import confirm as confirm_estimate

    return confirm_estimate(estimate(config, dataset), stdin, stdout)
