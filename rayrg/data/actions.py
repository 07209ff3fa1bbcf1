"""Whether a dataset's actions have names a vision-language model can read.

A method whose prompts show the actions (RG-VLM: "t=0: turn left") needs named discrete
actions; without them an imported Minari set reaches the model as "t=0: action 5" and a
LeRobot set as number vectors, and the model's answers mean little. :func:`action_naming`
says, from ``metadata.json`` alone (no shard is read), which of those a dataset is:

* ``named``: the metadata records ``action_names`` (an import given them), or the dataset's
  environment is a registered one with named actions (BabyAI, ALFRED: rayrg.envs.registry);
* ``ids``: an import recorded ``action_names: null`` (Minari without the option);
* ``continuous``: LeRobot's action vectors;
* ``unknown``: anything else (a plugin's or a hand-made dataset): its ``action_name`` column is
  whatever its producer wrote, and nothing here refuses it.

The label-time refusal is :func:`rayrg.rewards.declarations.dataset_problems`; ``rayrg inspect``
warns with the same line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rayrg.contracts.datasets import DatasetMetadata

ActionNaming = Literal["named", "ids", "continuous", "unknown"]
LEROBOT_ENV = "lerobot"  # rayrg.data.lerobot.ENV_NAME (not imported: that module is heavy)


@dataclass(frozen=True)
class Naming:
    kind: ActionNaming
    # Why not named, and how to give names (one line; "" when named or unknown).
    problem: str = ""


def _format_of(generator: str) -> str:
    """``rayrg.data.minari:import`` -> ``minari`` (the ``rayrg import`` format that made it)."""
    return generator.split(":", 1)[0].rsplit(".", 1)[-1] or "FORMAT"


def action_naming(meta: DatasetMetadata) -> Naming:
    names = meta.extra.get("action_names", ...)
    if isinstance(names, list) and names:
        return Naming("named")
    if meta.env_name == LEROBOT_ENV:
        return Naming("continuous", "its actions are continuous vectors (LeRobot), which a prompt would show as "
                                    "numbers, and no import option names them; label it with a method whose "
                                    "prompts show no actions (gvl, topreward), or state the rendering "
                                    "(rgvlm: continuous_actions: as_vectors)")
    if names is not ...:  # an import that recorded it has no names (Minari without the option)
        fmt = _format_of(meta.generator)
        return Naming("ids", "its actions are unnamed ids (a prompt would show 'action 5'); re-import it with "
                             f"`rayrg import {fmt} SOURCE OUT --option action_names='[name0, name1, ...]'` "
                             "(names by action id; BabyAI's and ALFRED's are in the README)")
    try:
        from rayrg.envs.registry import action_names

        if action_names(meta.env_name):
            return Naming("named")
    except Exception:  # not a registered environment (a toy, a plugin's data): its producer named them
        pass
    return Naming("unknown")


def read_action_naming(dataset: str | Path) -> Naming:
    """:func:`action_naming` of a local dataset (``unknown`` when its metadata is not a local
    file: a remote input is checked by the reader of its staged copy)."""
    from rayrg.contracts.datasets import read_metadata

    if not isinstance(dataset, str | Path) or not (Path(dataset) / "metadata.json").is_file():
        return Naming("unknown")
    return action_naming(read_metadata(dataset))
