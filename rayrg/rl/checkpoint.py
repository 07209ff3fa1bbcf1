"""The one owner of the IQL checkpoint format: what a checkpoint holds, how networks are built.

A checkpoint directory holds::

    learner.pt        torch.save of IQLLearner.state_dict(): networks, target, optimizers,
                      step, ``spec`` (NetworkSpec.to_dict()) and the TrainConfig
    featurizer.json   the instruction featurizer (kind + vocabulary)
    step.txt          the step, readable without torch

A training run's directory holds its Ray Train checkpoints (``iql/checkpoint_*``)
and, when it finished, ``final/`` (:func:`final_checkpoint`), the checkpoint evaluation
and the experiment use. These names live here only; other modules use the functions.

Every function takes a local path or a storage URI (:mod:`rayrg.storage`): a run on a
cluster keeps its checkpoints in a bucket. A local path gives back a ``Path``, as always; a
URI gives back a :class:`~rayrg.storage.Location`.

Training (save, resume), and the evaluation policy all go through this module, so a
checkpoint always rebuilds the networks it was trained with — observation kind, history
and, for ``features``, the frozen image encoder that made them (``spec.image_encoder``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rayrg.storage import Location, resolve

Where = Path | Location  # a local checkpoint folder (as today) or one in object storage

LEARNER_FILE = "learner.pt"
FEATURIZER_FILE = "featurizer.json"
STEP_FILE = "step.txt"
FINAL_DIR = "final"  # <train out>/final: the finished run's checkpoint


def as_where(location: Location) -> Where:
    """A local location as the absolute ``Path`` callers always got; a URI as it is."""
    return Path(location.path) if location.is_local else location


def final_checkpoint(out: str | os.PathLike[str] | Location) -> Where:
    """Where a training run writing to ``out`` leaves its final checkpoint."""
    return as_where(resolve(out) / FINAL_DIR)


def staging_dir(out: str | os.PathLike[str] | Location) -> Where:
    """Where the final checkpoint is assembled before it is renamed into place (atomic)."""
    return as_where(resolve(out) / f"{FINAL_DIR}.tmp")


def publish_checkpoint(source: Path, out: str | os.PathLike[str] | Location, extra: dict[str, str]) -> Where:
    """Copy the local checkpoint folder ``source`` plus ``extra`` files (name → text) to
    ``<out>/final``; returns it.

    Local: assembled in :func:`staging_dir` and renamed into place (atomic). Object stores
    have no rename of a folder: the files are uploaded with ``step.txt`` last, so a folder
    a killed upload left behind has no step and counts as no final checkpoint
    (:func:`finished_step`); it is replaced by the next run.
    """
    final = resolve(out) / FINAL_DIR
    if final.is_local:
        tmp = Path(final.path).with_name(f"{FINAL_DIR}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp)
        for name, text in extra.items():
            (tmp / name).write_text(text)
        tmp.replace(final.path)
        return Path(final.path)
    final.delete_tree()
    for path in sorted(p for p in source.rglob("*") if p.is_file() and p.name != STEP_FILE):
        (final / path.relative_to(source).as_posix()).write_bytes(path.read_bytes())
    for name, text in extra.items():
        (final / name).write_text(text)
    step = source / STEP_FILE
    if step.exists():  # last: the folder is a checkpoint only once everything else is there
        (final / STEP_FILE).write_bytes(step.read_bytes())
    return final


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


def is_checkpoint(directory: str | os.PathLike[str] | Location) -> bool:
    location = resolve(directory)
    return (location / LEARNER_FILE).exists() and (location / STEP_FILE).exists()


def checkpoint_step(directory: str | os.PathLike[str] | Location) -> int:
    return int((resolve(directory) / STEP_FILE).read_text())


def finished_step(directory: str | os.PathLike[str] | Location) -> int | None:
    """The step of the checkpoint at ``directory``, or None when there is none."""
    return checkpoint_step(directory) if (resolve(directory) / STEP_FILE).exists() else None


def load_featurizer(directory: str | os.PathLike[str] | Location) -> Any:
    from rayrg.rl.data import TextFeaturizer

    raw = json.loads((resolve(directory) / FEATURIZER_FILE).read_text())
    return TextFeaturizer(raw["kind"], raw["vocab"])


def load_state(directory: str | os.PathLike[str] | Location, device: Any = "cpu") -> dict[str, Any]:
    """The learner state; one clear line if the directory is not an IQL checkpoint."""
    import pickle

    import torch

    from rayrg.config import ConfigError

    directory = resolve(directory)
    learner = directory / LEARNER_FILE
    if not learner.exists():
        raise FileNotFoundError(f"{directory}: no {LEARNER_FILE} (not an IQL checkpoint)")
    try:
        source = learner.local_path or io.BytesIO(learner.read_bytes())
        state = torch.load(source, map_location=device, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise ConfigError(f"{directory}: not a checkpoint this rayrg can load ({exc})") from exc
    if not isinstance(state, dict) or "obs" not in state.get("spec", {}):
        raise ConfigError(f"{directory}: not a checkpoint this rayrg can load (it predates observation "
                          "kinds; retrain it)")
    return state


def load_policy_network(directory: str | os.PathLike[str] | Location, device: Any = "cpu") -> tuple[Any, Any, NetworkSpec, Any]:
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
