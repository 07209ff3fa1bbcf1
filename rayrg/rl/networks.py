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

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

# Per-channel index ranges of BabyAI's symbolic grid (object 0..10, colour 0..5, state 0..2),
# rounded up so an index table of a newer minigrid still fits; out-of-range values clamp.
STATE_VALUES_PER_CHANNEL = 16
STATE_PROJ_DEFAULT = 64


@dataclass
class ObsSpec:
    """What one observation is; recorded in every checkpoint so evaluation builds the same."""

    kind: str  # frame | state | features | encoded
    shape: tuple[int, ...]  # one observation (encoded: (k·C,))
    history: int = 1
    channels: list[int] = field(default_factory=lambda: [16, 32, 32])
    state_embed: int = 8
    # state: each observation's 49 cell embeddings → Linear → this many features (0: none, the
    # heads read all 49·state_embed per observation). See StateEncoder for why 64.
    state_proj: int = STATE_PROJ_DEFAULT

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, raw: dict) -> ObsSpec:
        # Checkpoints written before state_proj existed had no projection: rebuild them so.
        return cls(**{"state_proj": 0, **raw, "shape": tuple(raw["shape"])})


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
    """Symbolic grid → per cell, the sum of its (object, colour, state) embeddings → flatten
    → (``proj`` > 0) Linear + ReLU to ``proj`` features.

    The projection is shared by the k observations of a history, so the heads' first layer
    reads k·proj inputs instead of k·49·embed (1,568 at k = 4): that layer was most of an
    update's cost, and the projection costs a quarter of it.
    """

    def __init__(self, shape: tuple[int, ...], embed: int, proj: int = 0) -> None:
        super().__init__()
        cells, channels = shape[0] * shape[1], shape[2]
        self.embedding = nn.Embedding(channels * STATE_VALUES_PER_CHANNEL, embed)
        self.register_buffer("offsets", torch.arange(channels) * STATE_VALUES_PER_CHANNEL, persistent=False)
        self.proj = nn.Sequential(nn.Linear(cells * embed, proj), nn.ReLU()) if proj else None
        self.out_dim = proj or cells * embed

    def multi_hot(self, states: torch.Tensor) -> torch.Tensor:
        """``uint8[N, 7, 7, 3]`` → ``float[N, 49, 3·16]``: per cell, one 1 per channel value.

        Parameter-free, so networks of one spec can share it (IQLLearner builds it once per
        batch for Q, target Q, V and the policy: building it was a fifth of an update).
        """
        idx = states.long().clamp(max=STATE_VALUES_PER_CHANNEL - 1) + self.offsets
        multi_hot = torch.zeros(*idx.shape[:-1], self.embedding.num_embeddings, device=idx.device)
        return multi_hot.scatter_(-1, idx, 1.0).flatten(1, -2)

    def forward(self, states: torch.Tensor, prepared: bool = False) -> torch.Tensor:
        """``states``: uint8 grids, or (``prepared``) their :meth:`multi_hot`."""
        # The sum of a cell's channel embeddings, as (multi-hot of its values) @ weight: the
        # channels' value ranges are disjoint (offsets), so each cell's row has one 1 per
        # channel. A lookup's backward on CPU is a scatter-add over every index (index_add,
        # or embedding_dense_backward's sort): 40 % of an update at history 4; the matmul's
        # backward is one GEMM. Same parameters, same values (up to summation order).
        multi_hot = states if prepared else self.multi_hot(states)
        cells = (multi_hot @ self.embedding.weight).flatten(1)
        return cells if self.proj is None else self.proj(cells)


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
            self.inner = StateEncoder(spec.shape, spec.state_embed, spec.state_proj)
            per = self.inner.out_dim
        elif spec.kind in ("features", "encoded"):
            per = int(spec.shape[0])
        else:
            raise ValueError(f"unknown observation kind {spec.kind!r}")
        self.out_dim = per if spec.kind == "encoded" else per * spec.history

    def prepare(self, obs: torch.Tensor) -> torch.Tensor:
        """The parameter-free part of encoding ``obs`` (state: the multi-hot; others: ``obs``),
        the same for every encoder of this spec: build it once, pass it with ``prepared=True``."""
        if self.spec.kind != "state":
            return obs
        batch, k = obs.shape[:2]
        assert isinstance(self.inner, StateEncoder)
        return self.inner.multi_hot(obs.reshape(batch * k, *obs.shape[2:])).view(batch, k, *obs.shape[2:-1], -1)

    def forward(self, obs: torch.Tensor, prepared: bool = False) -> torch.Tensor:
        if self.spec.kind == "encoded":
            return obs
        batch = obs.shape[0]
        flat = obs.reshape(batch * obs.shape[1], *obs.shape[2:])
        if self.inner is None:
            out = flat.float()
        elif isinstance(self.inner, StateEncoder):
            out = self.inner(flat.flatten(1, -2) if prepared else flat, prepared=prepared)
        else:
            out = self.inner(flat)
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

    def prepare(self, text: torch.Tensor) -> torch.Tensor:
        """The parameter-free part (tokens: each word's share of the instruction's non-padding
        words, ``float[B, vocab]``), the same for every encoder: build it once per batch."""
        if self.kind != "tokens":
            return text
        counts = torch.zeros(text.shape[0], self.embedding.num_embeddings, device=text.device)
        counts.scatter_add_(1, text.long(), torch.ones(text.shape, device=text.device))
        counts[:, 0] = 0.0  # padding
        return counts / counts.sum(1, keepdim=True).clamp(min=1.0)

    def forward(self, text: torch.Tensor, prepared: bool = False) -> torch.Tensor:
        if self.kind != "tokens":
            return text
        if prepared:
            # The mean of the words' embeddings as (word shares) @ weight: one small GEMM, and
            # its backward one GEMM, instead of a [B, L, dim] gather, mask and sum per network.
            return text @ self.embedding.weight
        mask = (text > 0).float().unsqueeze(-1)
        # index_select for the cheaper CPU backward (see StateEncoder); padding rows are masked,
        # so row 0 gets no gradient, as with padding_idx.
        rows = self.embedding.weight.index_select(0, text.flatten()).view(*text.shape, -1)
        return (rows * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class MultiHeadMLP(nn.Module):
    """``heads`` independent 3-layer MLPs on one input, run as one matmul per layer.

    Layer 1 is one Linear with the heads' units side by side; layers 2 and 3 are batched
    matmuls over per-head weights ``[heads, in, out]``. Each head has its own parameters, as
    with separate MLPs (the twin Q stays two critics), with fewer, larger kernels.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.hidden = heads, hidden
        self.first = nn.Linear(in_dim, heads * hidden)
        self.w2 = nn.Parameter(torch.empty(heads, hidden, hidden))
        self.b2 = nn.Parameter(torch.empty(heads, 1, hidden))
        self.w3 = nn.Parameter(torch.empty(heads, hidden, out_dim))
        self.b3 = nn.Parameter(torch.empty(heads, 1, out_dim))
        for w, b in ((self.w2, self.b2), (self.w3, self.b3)):  # nn.Linear's default init
            bound = 1.0 / math.sqrt(w.shape[1])
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.first(x)).view(x.shape[0], self.heads, self.hidden).transpose(0, 1)
        h = torch.relu(torch.baddbmm(self.b2, h, self.w2))
        return torch.baddbmm(self.b3, h, self.w3)  # [heads, B, out]


class StateActionNet(nn.Module):
    """observation + instruction → ``heads`` outputs of size ``num_actions`` each (stacked on dim 0)."""

    def __init__(self, num_actions: int, heads: int, obs: ObsSpec, text_kind: str, vocab_size: int,
                 text_dim: int, feature_dim: int, hidden: int) -> None:
        super().__init__()
        self.obs = ObservationEncoder(obs)
        self.text = InstructionEncoder(text_kind, vocab_size, text_dim, feature_dim)
        self.mlp = MultiHeadMLP(self.obs.out_dim + self.text.out_dim, hidden, num_actions, heads)

    def forward(self, obs: torch.Tensor, text: torch.Tensor, prepared: bool = False) -> torch.Tensor:
        """``prepared``: ``obs`` and ``text`` are ``self.obs.prepare(obs)`` and
        ``self.text.prepare(text)``, built once for several networks of one spec."""
        return self.mlp(torch.cat([self.obs(obs, prepared), self.text(text, prepared)], dim=-1))


class StateNet(StateActionNet):
    """V(s, instruction): one scalar."""

    def __init__(self, **kwargs) -> None:
        super().__init__(num_actions=1, heads=1, **kwargs)

    def forward(self, obs: torch.Tensor, text: torch.Tensor, prepared: bool = False) -> torch.Tensor:
        return super().forward(obs, text, prepared)[0, :, 0]
