"""Prompt texts of the progress labellers, versioned; a version's text never changes (the
text itself enters every answer's cache key and the labels' fingerprint, so an edit would
re-label anyway — a new version keeps the old one reproducible).

* GVL — Generative Value Learning (Ma et al., "Vision Language Models are In-Context Value
  Learners", arXiv 2411.04549, §3 and App. prompt; OpenGVL, arXiv 2509.17321): the first
  frame is given as the 0 % reference, the other frames follow in a shuffled order, and the
  model answers each frame's task-completion percentage. Written after the paper's prompt,
  with the answer asked as JSON so it can be constrained and validated.
* TOPReward — token-probability progress (arXiv 2602.19313; LeRobot's ``topreward``): the
  frames so far, the instruction and a yes/no question whether the task is complete; the
  progress is the normalised probability of the affirmative answer token, read from the
  log-probabilities, not from the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GVLPrompt:
    system: str
    intro: str  # {instruction}
    reference: str  # before the first (0 %) frame
    frame: str  # {i}: before each shuffled frame
    question: str  # {n}: after the frames


@dataclass(frozen=True)
class TOPRewardPrompt:
    system: str
    intro: str  # {instruction}
    frame: str  # {i}
    question: str
    affirmative: tuple[str, ...]  # answer tokens meaning "complete" (stripped, case as given)
    negative: tuple[str, ...]


GVL_PROMPTS: dict[str, GVLPrompt] = {
    "v1": GVLPrompt(
        system="You are an expert roboticist tasked to predict task completion percentages for frames of a "
               "robot for the task of {instruction}.",
        intro="The task for the agent is: {instruction}. The task completion percentages are between 0 and "
              "100, where 100 corresponds to full task completion. Note that the frames are given in random "
              "order, so do not assume the order they are shown in is the order they happened in.\n",
        reference="Initial frame of the episode (task completion: 0%):\n",
        frame="\nFrame {i}:\n",
        question="\nFor each of the {n} frames after the initial one, in the order shown, give its task "
                 "completion percentage (an integer from 0 to 100). Answer with JSON: "
                 '{{"progress": [exactly {n} integers]}}.',
    ),
}

TOPREWARD_PROMPTS: dict[str, TOPRewardPrompt] = {
    "v1": TOPRewardPrompt(
        system="You are a helpful assistant that judges whether a robot has completed its task.",
        intro="The frames below show an agent attempting the task: {instruction}\n",
        frame="Frame {i}:\n",
        question="\nLooking at the last frame, is the task complete? Answer True or False.",
        affirmative=("True", "true", "TRUE", "Yes", "yes"),
        negative=("False", "false", "FALSE", "No", "no"),
    ),
}


def gvl_schema(n: int) -> dict[str, Any]:
    """Exactly ``n`` integers 0..100 (structured output where the backend has it)."""
    return {"type": "object",
            "properties": {"progress": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 100},
                                        "minItems": n, "maxItems": n}},
            "required": ["progress"], "additionalProperties": False}


def gvl_parts(version: str, instruction: str, images: list[bytes], order: list[int]) -> tuple[str, list]:
    """(system, user parts) of a GVL query: ``images`` in frame order, ``images[0]`` the 0 %
    reference; the others shown in ``order[1:]`` (positions into ``images``)."""
    p = GVL_PROMPTS[version]
    parts: list[tuple[str, Any]] = [("text", p.intro.format(instruction=instruction)), ("text", p.reference),
                                    ("image", images[0])]
    for shown, frame in enumerate(order[1:], start=1):
        parts += [("text", p.frame.format(i=shown)), ("image", images[frame])]
    parts.append(("text", p.question.format(n=len(order) - 1)))
    return p.system.format(instruction=instruction), parts


def topreward_parts(version: str, instruction: str, images: list[bytes]) -> tuple[str, list]:
    """(system, user parts) of a TOPReward query: the frames up to the one judged, in order."""
    p = TOPREWARD_PROMPTS[version]
    parts: list[tuple[str, Any]] = [("text", p.intro.format(instruction=instruction))]
    for i, image in enumerate(images):
        parts += [("text", p.frame.format(i=i)), ("image", image)]
    parts.append(("text", p.question))
    return p.system, parts
