"""A trained IQL policy for evaluation: argmax of the categorical policy's logits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class IQLPolicy:
    def __init__(self, checkpoint_dir: str | Path, device: str = "cpu") -> None:
        import torch

        from rayrg.rl.config import TrainConfig
        from rayrg.rl.data import TextFeaturizer
        from rayrg.rl.networks import StateActionNet
        from rayrg.rl.train import FEATURIZER_FILE, LEARNER_FILE

        directory = Path(checkpoint_dir)
        if not (directory / LEARNER_FILE).exists():
            raise FileNotFoundError(f"{directory}: no {LEARNER_FILE} (not an IQL checkpoint)")
        state = torch.load(directory / LEARNER_FILE, map_location=device, weights_only=False)
        raw = json.loads((directory / FEATURIZER_FILE).read_text())
        self.featurizer = TextFeaturizer(raw["kind"], raw["vocab"])
        config, spec = TrainConfig.from_dict(state["config"]), state["spec"]
        self.network = StateActionNet(
            num_actions=spec["num_actions"], heads=1, channels=config.channels,
            frame_shape=tuple(spec["frame_shape"]), text_kind=spec["text_kind"], vocab_size=spec["vocab_size"],
            text_dim=config.text_dim, feature_dim=spec["feature_dim"], hidden=config.hidden).to(device)
        self.network.load_state_dict(state["policy"])
        self.network.eval()
        self.device = device
        self.step = int(state["step"])
        self._text_cache: dict[str, np.ndarray] = {}

    def act(self, frames: np.ndarray, instructions: list[str]) -> np.ndarray:
        import torch

        missing = [t for t in set(instructions) if t not in self._text_cache]
        if missing:
            for text, feature in zip(missing, self.featurizer(missing), strict=True):
                self._text_cache[text] = feature
        text = torch.from_numpy(np.stack([self._text_cache[t] for t in instructions])).to(self.device)
        with torch.no_grad():
            logits = self.network(torch.from_numpy(np.ascontiguousarray(frames)).to(self.device), text)[0]
        return logits.argmax(-1).cpu().numpy()


def load_policy(checkpoint_dir: str | Path, device: str = "cpu") -> IQLPolicy:
    return IQLPolicy(checkpoint_dir, device)
