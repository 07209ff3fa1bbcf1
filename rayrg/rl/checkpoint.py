"""The one owner of the IQL checkpoint format: what a checkpoint holds, how networks are built.

A checkpoint directory holds::

    learner.pt        torch.save of IQLLearner.state_dict(): networks, target, optimizers,
                      step, ``spec`` (NetworkSpec.to_dict()) and the TrainConfig
    featurizer.json   the instruction featurizer (kind + vocabulary)
    step.txt          the step, readable without torch

A training run's directory holds its Ray Train checkpoints (``iql/checkpoint_*``)
and, when it finished, ``final/`` (:func:`final_checkpoint`), the checkpoint evaluation
and the experiment use. These names live here only; other modules use the functions.

Training (save, resume), and the evaluation policy all go through this module, so a
checkpoint always rebuilds the networks it was trained with — observation kind, history
and, for ``features``, the frozen image encoder that made them (``spec.image_encoder``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LEARNER_FILE = "learner.pt"
FEATURIZER_FILE = "featurizer.json"
STEP_FILE = "step.txt"
FINAL_DIR = "final"  # <train out>/final: the finished run's checkpoint


def final_checkpoint(out: str | Path) -> Path:
    """Where a training run writing to ``out`` leaves its final checkpoint."""
    return Path(out) / FINAL_DIR


def staging_dir(out: str | Path) -> Path:
    """Where the final checkpoint is assembled before it is renamed into place (atomic)."""
    return Path(out) / f"{FINAL_DIR}.tmp"


@dataclass
class NetworkSpec:
    """Everything besides TrainConfig that fixes the networks' shapes."""

    num_actions: int
    obs: dict[str, Any]  # ObsSpec.to_dict() of one observation as stored (not the shared encoding)
    text_kind: str
    vocab_size: int
    feature_dim: int  # instruction features (minilm); 0 for tokens
    image_encoder: dict[str, Any] | None = None  # features: the `rayrg encode` encoder record
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def build_networks(config: Any, spec: NetworkSpec, device: Any = "cpu") -> dict[str, Any]:
    """``q`` (twin heads), ``v``, ``policy`` and, with ``shared_encoder``, ``encoder``."""
    from rayrg.rl.networks import ObservationEncoder, ObsSpec, StateActionNet, StateNet

    obs = ObsSpec.from_dict(spec.obs)
    nets: dict[str, Any] = {}
    if config.shared_encoder:
        nets["encoder"] = ObservationEncoder(obs).to(device)
        obs = ObsSpec(kind="encoded", shape=(nets["encoder"].out_dim,), history=obs.history)
    common = {"obs": obs, "text_kind": spec.text_kind, "vocab_size": spec.vocab_size,
              "text_dim": config.text_dim, "feature_dim": spec.feature_dim, "hidden": config.hidden}
    nets["q"] = StateActionNet(num_actions=spec.num_actions, heads=2, **common).to(device)
    nets["v"] = StateNet(**common).to(device)
    nets["policy"] = StateActionNet(num_actions=spec.num_actions, heads=1, **common).to(device)
    return nets


def save_checkpoint(directory: str | Path, learner: Any, featurizer: Any) -> None:
    import torch

    directory = Path(directory)
    torch.save(learner.state_dict(), directory / LEARNER_FILE)
    (directory / FEATURIZER_FILE).write_text(json.dumps({"kind": featurizer.kind, "vocab": featurizer.vocab}))
    (directory / STEP_FILE).write_text(str(learner.step))


def is_checkpoint(directory: str | Path) -> bool:
    return (Path(directory) / LEARNER_FILE).exists() and (Path(directory) / STEP_FILE).exists()


def checkpoint_step(directory: str | Path) -> int:
    return int((Path(directory) / STEP_FILE).read_text())


def finished_step(directory: str | Path) -> int | None:
    """The step of the checkpoint at ``directory``, or None when there is none."""
    return checkpoint_step(directory) if (Path(directory) / STEP_FILE).exists() else None


def load_featurizer(directory: str | Path) -> Any:
    from rayrg.rl.data import TextFeaturizer

    raw = json.loads((Path(directory) / FEATURIZER_FILE).read_text())
    return TextFeaturizer(raw["kind"], raw["vocab"])


def load_state(directory: str | Path, device: Any = "cpu") -> dict[str, Any]:
    """The learner state; one clear line if the directory is not an IQL checkpoint."""
    import pickle

    import torch

    from rayrg.config import ConfigError

    directory = Path(directory)
    if not (directory / LEARNER_FILE).exists():
        raise FileNotFoundError(f"{directory}: no {LEARNER_FILE} (not an IQL checkpoint)")
    try:
        state = torch.load(directory / LEARNER_FILE, map_location=device, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise ConfigError(f"{directory}: not a checkpoint this rayrg can load ({exc})") from exc
    if not isinstance(state, dict) or "obs" not in state.get("spec", {}):
        raise ConfigError(f"{directory}: not a checkpoint this rayrg can load (it predates observation "
                          "kinds; retrain it)")
    return state


def load_policy_network(directory: str | Path, device: Any = "cpu") -> tuple[Any, Any, NetworkSpec, Any]:
    """(policy network, shared encoder or None, spec, TrainConfig), in eval mode."""
    from rayrg.rl.config import TrainConfig

    state = load_state(directory, device)
    config, spec = TrainConfig.from_dict(state["config"]), NetworkSpec(**state["spec"])
    nets = build_networks(config, spec, device)
    nets["policy"].load_state_dict(state["policy"])
    encoder = nets.get("encoder")
    if encoder is not None:
        encoder.load_state_dict(state["encoder"])
        encoder.eval()
    nets["policy"].eval()
    return nets["policy"], encoder, spec, config


def network_spec(config: Any, info: dict[str, Any], featurizer: Any, text_width: int) -> NetworkSpec:
    """The NetworkSpec of ``config`` on data loaded by :func:`rayrg.rl.data.load_transitions`."""
    from rayrg.rl.networks import ObsSpec

    obs = ObsSpec(kind=config.observation, shape=tuple(info["obs_shape"]), history=config.history,
                  channels=list(config.channels))
    return NetworkSpec(num_actions=info["num_actions"], obs=obs.to_dict(), text_kind=featurizer.kind,
                       vocab_size=max(featurizer.vocab.values(), default=1) + 1,
                       feature_dim=text_width if featurizer.kind != "tokens" else 0,
                       image_encoder=info.get("image_encoder"))
