"""Matplotlib figures of the report (Agg backend; PNG files)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from rayrg.runtime import agg_pyplot


def subtask_axis(table: Mapping[str, Mapping[str, Mapping[int, object]]]) -> list[int]:
    """The sub-task counts that have data in ``table[mode][method][n]``: the x axis's ticks."""
    return sorted({int(n) for by_method in table.values() for series in by_method.values() for n in series})


def return_by_subtasks(
    table: Mapping[str, Mapping[str, Mapping[int, tuple[float, float, float]]]],
    labels: Mapping[str, str],
    out: Path,
) -> Path:
    """The paper's Figure-4 analogue: return vs number of sub-tasks, one panel per mode.

    ``table[mode][method][n] = (mean, ci_low, ci_high)``.
    """
    plt = agg_pyplot()
    modes = list(table)
    # The x axis spans the sub-task counts that have data only (a 1–6 axis with data at 1–3
    # read as if the longer missions had been tried and scored nothing).
    counts = subtask_axis(table)
    fig, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 4), sharey=True, squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        for method, series in table[mode].items():
            ns = sorted(series)
            mean = np.array([series[n][0] for n in ns])
            low = np.array([series[n][1] for n in ns])
            high = np.array([series[n][2] for n in ns])
            ax.errorbar(ns, mean, yerr=[mean - low, high - mean], marker="o", capsize=3,
                        label=labels.get(method, method))
        ax.set_title(f"{mode} initial state")
        ax.set_xlabel("sub-tasks in the mission")
        ax.set_xticks(counts)
        if counts:
            ax.set_xlim(counts[0] - 0.5, counts[-1] + 0.5)
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("return (fraction of sub-tasks completed)")
    axes[0][-1].legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def reward_curves(
    steps: Sequence[int],
    rewards: Mapping[str, Sequence[float]],
    subtask_steps: Sequence[int],
    title: str,
    out: Path,
) -> Path:
    """Each reward column along one episode, one small panel per column (shared step axis);
    dotted lines where a sub-task was completed."""
    import textwrap

    plt = agg_pyplot()
    n = max(1, len(rewards))
    fig, axes = plt.subplots(n, 1, figsize=(9, 0.9 * n + 1.2), sharex=True, squeeze=False)
    for ax, (name, values) in zip(axes[:, 0], rewards.items(), strict=False):
        ax.plot(steps, values, linewidth=1.0, drawstyle="steps-mid", color="tab:blue")
        for s in subtask_steps:
            ax.axvline(s, color="k", linestyle=":", alpha=0.6)
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step (dotted: a sub-task completed)")
    fig.suptitle(textwrap.fill(title, 110), fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def training_curves(
    runs: Mapping[str, Mapping[int, Sequence[Mapping[str, float]]]],
    metrics: Sequence[str],
    labels: Mapping[str, str],
    out: Path,
) -> Path:
    """One panel per metric: each method's mean over training seeds against the update step,
    shaded between the seeds' min and max. ``runs[method][seed]`` = the run's curve records."""
    plt = agg_pyplot()
    metrics = list(metrics) or ["loss/policy"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for method, seeds in runs.items():
            steps = sorted({int(r["step"]) for recs in seeds.values() for r in recs if metric in r})
            if not steps:
                continue
            by_step = [[r[metric] for recs in seeds.values() for r in recs
                        if int(r["step"]) == s and metric in r] for s in steps]
            mean = np.array([np.mean(v) for v in by_step])
            ax.plot(steps, mean, marker=".", label=labels.get(method, method))
            ax.fill_between(steps, [min(v) for v in by_step], [max(v) for v in by_step], alpha=0.2)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("update step")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def accuracy_sweep(series: Mapping[str, Sequence[tuple[float, float, float, float]]],
                   reference: Mapping[str, float], out: Path) -> Path:
    """Return against label accuracy: per series, points ``(accuracy, mean, lo, hi)`` (mean over
    seeds, the seeds' 95 % t-interval as error bars); ``reference`` lines (e.g. sparse alone)."""
    plt = agg_pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for name, points in series.items():
        points = sorted(points)
        x = [p[0] for p in points]
        mean = np.array([p[1] for p in points])
        err = np.array([[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]])
        ax.errorbar(x, mean, yerr=np.nan_to_num(err), marker="o", capsize=3, label=name)
    for name, value in reference.items():
        ax.axhline(value, linestyle="--", linewidth=1, color="grey")
        ax.annotate(name, (ax.get_xlim()[0], value), fontsize=7, va="bottom")
    ax.set_xlabel("label accuracy (set by the labeller's config)")
    ax.set_ylabel("mean return (test tasks)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
