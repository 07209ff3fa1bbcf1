"""Networks of discrete, language-conditioned IQL.

Shapes (B = batch, H×W frames, A = actions, D = instruction feature size):

* frames ``uint8[B, H, W, 3]`` → :class:`ConvEncoder` → ``float[B, C]``
* instructions: ``tokens`` — ``int64[B, L]`` word ids (0 = padding) → mean of learned
  embeddings → ``float[B, text_dim]``; ``minilm`` — precomputed frozen ``float[B, 384]``
* :class:`StateActionNet` (twin Q): concat → MLP → ``float[B, A]`` per head;
  :class:`StateNet` (V): → ``float[B]``; policy: a StateActionNet with one head → logits ``[B, A]``.

Each network has its own encoders: IQL updates Q, V and the policy with separate losses
and optimizers, so they share no parameters.
"""

from __future__ import annotations

import torch
from torch import nn


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
            self.out_dim = int(self.conv(torch.zeros(1, 3, *frame_shape)).shape[-1])

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).float().div_(255.0)
        return self.conv(x)


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
    """frame + instruction → ``heads`` outputs of size ``num_actions`` each (stacked on dim 0)."""

    def __init__(self, num_actions: int, heads: int, channels: list[int], frame_shape: tuple[int, int],
                 text_kind: str, vocab_size: int, text_dim: int, feature_dim: int, hidden: int) -> None:
        super().__init__()
        self.frames = ConvEncoder(channels, frame_shape)
        self.text = InstructionEncoder(text_kind, vocab_size, text_dim, feature_dim)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(self.frames.out_dim + self.text.out_dim, hidden), nn.ReLU(),
                          nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_actions))
            for _ in range(heads))

    def forward(self, frames: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.frames(frames), self.text(text)], dim=-1)
        return torch.stack([head(h) for head in self.heads])


class StateNet(StateActionNet):
    """V(s, instruction): one scalar."""

    def __init__(self, **kwargs) -> None:
        super().__init__(num_actions=1, heads=1, **kwargs)

    def forward(self, frames: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return super().forward(frames, text)[0, :, 0]
