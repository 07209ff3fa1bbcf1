"""A trained IQL policy for evaluation: argmax of the categorical policy's logits.

The policy observes what it was trained on (its checkpoint's ``spec``): frames, BabyAI's
symbolic state read from the live environment, or frozen image-encoder features of the
live frames; stacked over the last ``history`` steps by the caller
(:class:`rayrg.evaluation.policies.LearnedPolicy`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class IQLPolicy:
    def __init__(self, network: Any, encoder: Any, spec: Any, featurizer: Any, device: str = "cpu",
                 step: int = 0) -> None:
        from rayrg.rl.networks import ObsSpec

        self.network, self.encoder, self.spec = network, encoder, spec
        self.featurizer, self.device, self.step = featurizer, device, step
        obs = ObsSpec.from_dict(spec.obs)
        self.kind, self.history = obs.kind, obs.history
        self.image_encoder = None
        if self.kind == "features":
            from rayrg.encode.encoders import load_image_encoder

            self.image_encoder = load_image_encoder(spec.image_encoder, device=device)
        self._text_cache: dict[str, np.ndarray] = {}

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: str | Path, device: str = "cpu") -> IQLPolicy:
        from rayrg.rl.checkpoint import checkpoint_step, load_featurizer, load_policy_network

        network, encoder, spec, _ = load_policy_network(checkpoint_dir, device)
        return cls(network, encoder, spec, load_featurizer(checkpoint_dir), device, checkpoint_step(checkpoint_dir))

    def observe(self, envs: list[Any], frames: np.ndarray) -> np.ndarray:
        """One observation per env, of the kind the policy was trained on."""
        if self.kind == "frame":
            return frames
        if self.kind == "state":
            missing = [type(e).__name__ for e in envs if not hasattr(e, "state_observation")]
            if missing:
                raise ValueError(f"this policy observes symbolic states; {missing[0]} has none")
            return np.stack([e.state_observation() for e in envs])
        return self.image_encoder(frames)

    def act(self, observations: np.ndarray, instructions: list[str]) -> np.ndarray:
        """``observations``: ``[B, history, *obs_shape]`` (or ``[B, *obs_shape]`` when history is 1)."""
        import torch

        missing = [t for t in set(instructions) if t not in self._text_cache]
        if missing:
            for text, feature in zip(missing, self.featurizer(missing), strict=True):
                self._text_cache[text] = feature
        text = torch.from_numpy(np.stack([self._text_cache[t] for t in instructions])).to(self.device)
        obs = torch.from_numpy(np.ascontiguousarray(observations)).to(self.device)
        if obs.dim() == len(self.spec.obs["shape"]) + 1:
            obs = obs.unsqueeze(1)
        with torch.no_grad():
            if self.encoder is not None:
                obs = self.encoder(obs)
            logits = self.network(obs, text)[0]
        return logits.argmax(-1).cpu().numpy()


def load_policy(checkpoint_dir: str | Path, device: str = "cpu") -> IQLPolicy:
    return IQLPolicy.from_checkpoint(checkpoint_dir, device)
