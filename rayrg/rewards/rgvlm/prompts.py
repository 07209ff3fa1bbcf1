"""Versioned prompt templates of RG-VLM's two-turn chat.

A template is never edited in place: a changed wording is a new version, because the
version is part of every label's provenance and of the cache key (an old answer must
never be served for a new prompt).

Turn 1 (analysis): the grid image (tiles labelled ``t=<step>``), the instruction and the
actions; the model describes what changes between frames and how each action relates to
the goal. Turn 2 (same chat, turn 1's answer in context): one integer score 0..10 per
action as JSON ``{"scores": [...]}`` with exactly as many scores as the window has steps
(the final window of an episode may be shorter than W).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PromptTemplate:
    version: str
    system: str
    analysis: str  # format keys: instruction, actions_text, num_steps, first_step, last_step
    scores: str  # format keys: num_steps, first_step, last_step


PROMPTS: dict[str, PromptTemplate] = {
    "v1": PromptTemplate(
        version="v1",
        system=(
            "You are an expert evaluator of an embodied agent. You judge how much each action "
            "of the agent contributes to completing its language instruction."
        ),
        analysis=(
            "The image is a grid of {num_steps} consecutive observations of the agent, in "
            "order; each tile is labelled t=<step> and shows the observation BEFORE that "
            "step's action.\n"
            "Instruction: {instruction}\n"
            "Actions taken:\n{actions_text}\n\n"
            "Analyse the differences between consecutive frames and explain, for each action "
            "from t={first_step} to t={last_step}, how it relates to the instruction's goal "
            "(progress towards a sub-goal, no effect, or moving away from it)."
        ),
        scores=(
            "Based on your analysis, score each of the {num_steps} actions (t={first_step} to "
            "t={last_step}, in order) from 0 to 10, where 10 means the action fully contributes "
            "to the goal and 0 means it does not contribute at all. Answer ONLY with JSON of the "
            'form {{"scores": [s_1, ..., s_{num_steps}]}}: exactly {num_steps} integers.'
        ),
    ),
}


def get_prompt(version: str) -> PromptTemplate:
    if version not in PROMPTS:
        raise KeyError(f"unknown prompt version {version!r}; known: {sorted(PROMPTS)}")
    return PROMPTS[version]


def render(version: str, instruction: str, actions_text: str, start_step: int,
           num_steps: int) -> tuple[str, str, str]:
    """(system, turn-1 text, turn-2 text) for one window."""
    template = get_prompt(version)
    keys = {"instruction": instruction, "actions_text": actions_text, "num_steps": num_steps,
            "first_step": start_step, "last_step": start_step + num_steps - 1}
    return template.system, template.analysis.format(**keys), template.scores.format(**keys)


def scores_schema(num_steps: int) -> dict[str, Any]:
    """JSON schema of the turn-2 answer: exactly ``num_steps`` integers in 0..10."""
    return {
        "type": "object",
        "properties": {
            "scores": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0, "maximum": 10},
                "minItems": num_steps,
                "maxItems": num_steps,
            }
        },
        "required": ["scores"],
        "additionalProperties": False,
    }
