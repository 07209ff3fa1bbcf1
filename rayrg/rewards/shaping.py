"""Reward shaping, in one place: potential-based shaping from a per-frame progress, and the
centred and potential-based variants of a dense per-transition reward.

Potential-based shaping (Ng, Harada & Russell 1999): with a potential Φ over states,
``F(s, s') = γ·Φ(s') − Φ(s)`` added to (or used as) a reward leaves the optimal policy
unchanged. Progress labellers (GVL, TOPReward: :mod:`rayrg.rewards.progress`) give Φ as the
task progress of each frame in [0, 1]; the reward of the transition at step t is then
``γ·Φ(frame_{t+1}) − Φ(frame_t)``. On an episode's last transition the next frame is the
episode's final frame when one was recorded; otherwise Φ(s') = Φ(s_T) is taken as the last
known progress (a terminal with no frame).

The sum over an episode telescopes: ``Σ_t γ^t F_t = γ^T Φ_T − Φ_0`` (tests check it), which is
why the discount γ of the shaping must be the discount the learner uses: a column shaped with
another γ no longer telescopes under the learner's return, and the policy-invariance
guarantee is gone. The γ is recorded in each shaped column's provenance under
:data:`GAMMA_KEY`, and :func:`check_gamma` refuses a mismatch in one line.

Pure numpy functions; rows are one episode's transitions in step order.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

GAMMA_KEY = "shaping_gamma"  # in a shaped column's provenance: the γ it was shaped with
__all__ = ["GAMMA_KEY", "centred", "check_gamma", "discounted_sum", "potential_based", "potential_from_rewards",
           "progress_shaping", "shaping_provenance"]


def progress_shaping(progress: np.ndarray, gamma: float, final: float | None = None) -> np.ndarray:
    """``γ·Φ(s_{t+1}) − Φ(s_t)`` per transition of one episode.

    ``progress``: Φ of each transition's frame (length T, NaN where unknown); ``final``: Φ of
    the frame after the last transition (None: the last frame's Φ is reused). A NaN Φ on
    either side makes that transition's reward NaN (never a made-up 0).
    """
    phi = np.asarray(progress, dtype=np.float64)
    if phi.ndim != 1:
        raise ValueError(f"progress must be one episode's 1-D array, got shape {phi.shape}")
    if phi.size == 0:
        return np.zeros(0, dtype=np.float32)
    nxt = np.empty_like(phi)
    nxt[:-1] = phi[1:]
    nxt[-1] = phi[-1] if final is None else final
    return (gamma * nxt - phi).astype(np.float32)


def potential_based(reward: np.ndarray, potential: np.ndarray, gamma: float,
                    final: float | None = None) -> np.ndarray:
    """``r_t + γ·Φ(s_{t+1}) − Φ(s_t)``: a dense reward with potential-based shaping added."""
    return (np.asarray(reward, dtype=np.float64) + progress_shaping(potential, gamma, final)).astype(np.float32)


def potential_from_rewards(reward: np.ndarray) -> np.ndarray:
    """A potential from a dense per-transition reward: its running sum before each step,
    ``Φ(s_t) = Σ_{k<t} r_k``, rescaled to [0, 1] by the episode's total magnitude (so a
    per-transition score — an RG-VLM score — becomes progress-like and can be shaped)."""
    r = np.nan_to_num(np.asarray(reward, dtype=np.float64), nan=0.0)
    phi = np.concatenate([[0.0], np.cumsum(r)[:-1]]) if r.size else r
    scale = float(np.abs(r).sum())
    return (phi / scale if scale > 0 else phi).astype(np.float32)


def centred(reward: np.ndarray, baseline: float | None = None) -> np.ndarray:
    """A dense reward minus a baseline (its mean over the rows given, NaN ignored, when None):
    a constant offset makes an agent prefer longer or shorter episodes; centring removes it."""
    r = np.asarray(reward, dtype=np.float64)
    if baseline is None:
        finite = r[np.isfinite(r)]
        baseline = float(finite.mean()) if finite.size else 0.0
    return (r - baseline).astype(np.float32)


def discounted_sum(reward: np.ndarray, gamma: float) -> float:
    r = np.asarray(reward, dtype=np.float64)
    return float((r * gamma ** np.arange(r.size)).sum())


def shaping_provenance(gamma: float, potential: str) -> dict[str, Any]:
    """What a shaped column records with its provenance (``check_gamma`` reads it)."""
    return {GAMMA_KEY: float(gamma), "shaping": f"potential-based: gamma*phi(s') - phi(s), phi = {potential}"}


def check_gamma(dataset: str | Path | Mapping[str, Mapping[str, Any]], column: str, gamma: float) -> None:
    """Refuse training on ``column`` with discount ``gamma`` when it was shaped with another γ.

    ``dataset``: a labelled dataset's path, or its column provenance
    (``Dataset.open(path).provenance``); unshaped columns (no :data:`GAMMA_KEY`) pass. Raises
    :class:`rayrg.config.ConfigError` (one line, exit code 2).
    """
    from rayrg.config import ConfigError

    if isinstance(dataset, Mapping):
        provenance, source = dataset, "dataset"
    else:
        from rayrg.data.access import Dataset

        provenance, source = Dataset.open(dataset).provenance, str(dataset)

    shaped = (provenance.get(column) or {}).get(GAMMA_KEY)
    if shaped is not None and not np.isclose(float(shaped), float(gamma), rtol=0, atol=1e-9):
        raise ConfigError(f"{source}: reward column '{column}' was shaped with gamma={float(shaped)} "
                          f"but training uses discount {float(gamma)}; potential-based shaping keeps the "
                          f"optimal policy only with the learner's own gamma: relabel with gamma: "
                          f"{float(gamma)} or train with discount {float(shaped)}")
