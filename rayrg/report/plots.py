"""Matplotlib figures of the report (Agg backend; PNG files)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from rayrg.runtime import agg_pyplot


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
        ax.set_xticks(range(1, 7))
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
