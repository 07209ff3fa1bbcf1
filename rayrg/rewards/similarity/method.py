"""A similarity method: its config class, its scorer, its reward columns and its provenance.

One object per method, registered by one line in :data:`rayrg.rewards.registry.LABEL_METHODS`
(``"<name>": "<module>:<attribute>"``). It is a :class:`~rayrg.rewards.registry.LabelMethod`,
so ``rayrg label`` and :func:`~rayrg.rewards.registry.run_label` run it as they run any
labeller; :mod:`rayrg.rewards.similarity.stages` runs the Ray Data pass and asks the method
for everything method-specific, so the stage never names a method.

Two shapes of pass exist, chosen by ``granularity``:

* :class:`FrameMethod` (``transition``): one score per observation, frames decoded in
  ``map_batches`` actors (CLIP-Baumli, VLM-RMs, BLIP-2);
* :class:`EpisodeMethod` (``episode_end``): one score per episode from its whole video,
  given on its last transition, 0 on the others (RoboCLIP).

The method object travels to the Ray actors (pickled), so a method defined outside this
package (a test's toy method) runs on the workers without a registry lookup there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from rayrg.rewards.declarations import Need, OutputColumn
from rayrg.rewards.registry import LabelMethod
from rayrg.rewards.similarity.config import PerFrameConfig, SimilarityConfig

if TYPE_CHECKING:
    from rayrg.rewards.similarity.stages import Scored

Columns = dict[str, np.ndarray]
Provenances = dict[str, dict[str, Any]]


class SimilarityMethod(LabelMethod, ABC):
    """Base of every similarity method; subclass :class:`FrameMethod` or :class:`EpisodeMethod`."""

    granularity: ClassVar[str]  # "transition" | "episode_end": the pass the stage builds
    value: ClassVar[str] = ""  # provenance "value" of the single reward column

    def __init__(self, name: str, config_cls: type[SimilarityConfig]) -> None:
        super().__init__(name=name, config_cls=config_cls, run=self.label, extra_inputs=self.identity_inputs,
                         needs=self.method_needs, outputs=self.output_columns, describe=self.describe_config)

    # -- declarations (rayrg.rewards.declarations) --------------------------------------
    def method_needs(self, config: Any) -> list[Need]:
        """The model's weights here (:mod:`rayrg.models.weights`' rule), and the GPUs asked for."""
        out = [Need("weights", "model", str(config.model))]
        if config.num_gpus or config.device == "cuda":
            out.append(Need("gpus", "num_gpus", max(config.num_gpus or 1, 1) * config.max_actors))
        return out

    def output_columns(self, config: Any) -> list[OutputColumn]:
        """By default one reward column, ``config.column``."""
        return [OutputColumn(config.column, "reward", self.value_of(config))]

    def describe_config(self, config: Any) -> str:
        return f"{config.model} (one model pass per {'episode' if self.granularity == 'episode_end' else 'frame'})"

    def identity_inputs(self, config: Any) -> dict[str, Any]:
        """The model's identity in the labels' fingerprint: new weights saved under the same
        directory, or a new snapshot of the same hub id, label again (:mod:`rayrg.models.identity`)."""
        from rayrg.models.identity import model_identity

        return {"model_identity": model_identity(str(config.model))}

    # Identity, not the dataclass's field-wise ones: ``run`` is a bound method of this
    # object, so comparing or hashing it field by field would recurse.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def label(self, config: Any, dataset: Path, out: Path, *, address: str | None = None) -> Path:
        from rayrg.rewards.similarity.stages import label

        return label(self, config, dataset, out, address=address)

    @abstractmethod
    def load(self, config: Any) -> Any:
        """In the actor: the model, loaded once (it has ``num_parameters``)."""

    def model_key(self, config: Any) -> str:
        """Variants with the same key share one loaded model in an actor."""
        return str(config.model)

    def negatives(self, config: Any, instructions: Sequence[str]) -> dict[str, list[str]]:
        """instruction -> negative instructions, built once on the driver; none by default."""
        return {}

    def provenance(self, config: Any, scored: Scored, example: str) -> dict[str, Any]:
        """Method-specific provenance fields, added after the shared ones (stages.provenance)."""
        return {}

    def columns(self, config: Any, scored: Scored, prov: dict[str, Any]) -> tuple[Columns, Provenances]:
        """Reward columns and their provenance; by default one column ``config.column``."""
        return {config.column: scored.score}, {config.column: {**prov, "value": self.value_of(config)}}

    def value_of(self, config: Any) -> str:
        """What the single column's values are (provenance ``value``)."""
        return self.value


class FrameMethod(SimilarityMethod):
    """One score per observation; transition t gets observation t+1 (``next``) or t."""

    granularity: ClassVar[str] = "transition"

    def __init__(self, name: str, config_cls: type[PerFrameConfig]) -> None:
        super().__init__(name, config_cls)

    @abstractmethod
    def score_frames(self, model: Any, config: Any, images: list[np.ndarray], instructions: list[str],
                     negatives: dict[str, list[str]], cache: dict[str, Any]) -> dict[str, np.ndarray]:
        """``{"score": [N], "cosine": [N]}`` (cosine NaN where the method has none) for N frames.

        ``cache`` lives for one batch and is shared by the variants scored on it (e.g. one
        image pass per model).
        """

    def provenance(self, config: Any, scored: Scored, example: str) -> dict[str, Any]:
        return {"observation": config.observation}


class EpisodeMethod(SimilarityMethod):
    """One score per episode from all its observations, on its last transition (0 elsewhere)."""

    granularity: ClassVar[str] = "episode_end"

    @abstractmethod
    def score_videos(self, model: Any, config: Any, videos: list[list[np.ndarray]],
                     instructions: list[str]) -> np.ndarray:
        """One score per episode; ``videos[i]`` is every decoded observation o_0 .. o_T."""
