"""Networks of discrete, language-conditioned IQL.

Shapes (B = batch, k = history, A = actions, D = instruction feature size):

* observations ``[B, k, *obs_shape]`` → :class:`ObservationEncoder` → ``float[B, k·C]``, one
  per-observation encoder applied to each of the k stacked observations:
  ``frame`` — uint8 ``[H, W, 3]`` → :class:`ConvEncoder`; ``state`` — BabyAI's symbolic
  uint8 ``[7, 7, 3]`` → :class:`StateEncoder` (learned embeddings, no conv); ``features`` —
  precomputed frozen float ``[F]`` → identity; ``encoded`` — already encoded by a shared
  encoder (``[B, k·C]``) → identity.
* instructions: ``tokens`` — ``int64[B, L]`` word ids (0 = padding) → mean of learned
  embeddings → ``float[B, text_dim]``; ``minilm`` — precomputed frozen ``float[B, 384]``
* :class:`StateActionNet` (twin Q): concat → MLP → ``float[B, A]`` per head;
  :class:`StateNet` (V): → ``float[B]``; policy: a StateActionNet with one head → logits ``[B, A]``.

By default each network has its own encoders: IQL updates Q, V and the policy with separate
losses and optimizers. ``shared_encoder`` instead gives the learner one encoder (trained by
the Q loss) and the networks ``encoded`` inputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

# Per-channel index ranges of BabyAI's symbolic grid (object 0..10, colour 0..5, state 0..2),
# rounded up so an index table of a newer minigrid still fits; out-of-range values clamp.
STATE_VALUES_PER_CHANNEL = 16


@dataclass
class ObsSpec:
    """What one observation is; recorded in every checkpoint so evaluation builds the same."""

    kind: str  # frame | state | features | encoded
    shape: tuple[int, ...]  # one observation (encoded: (k·C,))
    history: int = 1
    channels: list[int] = field(default_factory=lambda: [16, 32, 32])
    state_embed: int = 8

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, raw: dict) -> ObsSpec:
        return cls(**{**raw, "shape": tuple(raw["shape"])})


class ConvEncoder(nn.Module):
    def __init__(self, channels: list[int], frame_shape: tuple[int, int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for ch in channels:
            layers += [nn.Conv2d(in_ch, ch, 3, stride=2, padding=1), nn.ReLU()]
            in_ch = ch
        self.conv = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            self.out_dim = int(self.conv(torch.zeros(1, 3, *frame_shape[:2])).shape[-1])

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).float().div_(255.0)
        return self.conv(x)


class StateEncoder(nn.Module):
    """Symbolic grid → per cell, the sum of its (object, colour, state) embeddings → flatten.

    No projection layer: the heads' first layer reads the cells directly, so a state costs
    one embedding gather instead of a conv stack (the point of the ``state`` observation).
    """

    def __init__(self, shape: tuple[int, ...], embed: int) -> None:
        super().__init__()
        cells, channels = shape[0] * shape[1], shape[2]
        self.embedding = nn.Embedding(channels * STATE_VALUES_PER_CHANNEL, embed)
        self.register_buffer("offsets", torch.arange(channels) * STATE_VALUES_PER_CHANNEL, persistent=False)
        self.out_dim = cells * embed

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        idx = states.long().clamp(max=STATE_VALUES_PER_CHANNEL - 1) + self.offsets
        return self.embedding(idx).sum(-2).flatten(1)


class ObservationEncoder(nn.Module):
    """``[B, k, *shape]`` → ``[B, out_dim]``: one encoder per observation, outputs concatenated."""

    def __init__(self, spec: ObsSpec) -> None:
        super().__init__()
        self.spec = spec
        self.inner: nn.Module | None = None
        if spec.kind == "frame":
            self.inner = ConvEncoder(spec.channels, spec.shape)
            per = self.inner.out_dim
        elif spec.kind == "state":
            self.inner = StateEncoder(spec.shape, spec.state_embed)
            per = self.inner.out_dim
        elif spec.kind in ("features", "encoded"):
            per = int(spec.shape[0])
        else:
            raise ValueError(f"unknown observation kind {spec.kind!r}")
        self.out_dim = per if spec.kind == "encoded" else per * spec.history

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.spec.kind == "encoded":
            return obs
        batch = obs.shape[0]
        flat = obs.reshape(batch * obs.shape[1], *obs.shape[2:])
        out = flat.float() if self.inner is None else self.inner(flat)
        return out.reshape(batch, -1)


class InstructionEncoder(nn.Module):
    """Learned bag-of-words embedding (``tokens``) or identity on precomputed features."""

    def __init__(self, kind: str, vocab_size: int, text_dim: int, feature_dim: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "tokens":
            self.embedding = nn.Embedding(vocab_size, text_dim, padding_idx=0)
            self.out_dim = text_dim
        else:
            self.out_dim = feature_dim

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        if self.kind != "tokens":
            return text
        mask = (text > 0).float().unsqueeze(-1)
        return (self.embedding(text) * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class StateActionNet(nn.Module):
    """observation + instruction → ``heads`` outputs of size ``num_actions`` each (stacked on dim 0)."""

    def __init__(self, num_actions: int, heads: int, obs: ObsSpec, text_kind: str, vocab_size: int,
                 text_dim: int, feature_dim: int, hidden: int) -> None:
        super().__init__()
        self.obs = ObservationEncoder(obs)
        self.text = InstructionEncoder(text_kind, vocab_size, text_dim, feature_dim)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(self.obs.out_dim + self.text.out_dim, hidden), nn.ReLU(),
                          nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_actions))
            for _ in range(heads))

    def forward(self, obs: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.obs(obs), self.text(text)], dim=-1)
        return torch.stack([head(h) for head in self.heads])


class StateNet(StateActionNet):
    """V(s, instruction): one scalar."""

    def __init__(self, **kwargs) -> None:
        super().__init__(num_actions=1, heads=1, **kwargs)

    def forward(self, obs: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return super().forward(obs, text)[0, :, 0]
