"""Parsing turn 2: exactly ``n`` integer scores in 0..10, or a reason why not.

Accepted: ``{"scores": [...]}`` (the schema every backend is asked for), or a bare JSON
list, optionally inside a Markdown code fence or surrounded by prose (models without
structured output). Scores must be integers (``7`` or ``7.0``); strings, booleans,
out-of-range values and a wrong count are rejected with a reason, never repaired: a
padded or truncated list would put scores on the wrong actions.
"""

from __future__ import annotations

import json
import re

MIN_SCORE, MAX_SCORE = 0, 10
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


class ParseError(ValueError):
    """The answer cannot be used; ``str(error)`` is the reason stored with the label."""


def _candidates(text: str) -> list[str]:
    out = [m.group(1) for m in _FENCE.finditer(text)]
    out.append(text)
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = text.find(opener), text.rfind(closer)
        if 0 <= start < end:
            out.append(text[start:end + 1])
    return out


def parse_scores(text: str | None, num_steps: int) -> list[int]:
    if not text or not text.strip():
        raise ParseError("empty answer")
    value, found = None, False
    for candidate in _candidates(text.strip()):
        try:
            value = json.loads(candidate)
            found = True
            break
        except (json.JSONDecodeError, ValueError):
            continue
    if not found:
        raise ParseError("no JSON in answer")
    if isinstance(value, dict):
        if "scores" not in value:
            raise ParseError(f"JSON object without 'scores' (keys: {sorted(value)[:5]})")
        value = value["scores"]
    if not isinstance(value, list):
        raise ParseError(f"scores is a {type(value).__name__}, not a list")
    if len(value) != num_steps:
        raise ParseError(f"expected {num_steps} scores, got {len(value)}")
    scores = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
            raise ParseError(f"score {i} is not an integer: {v!r}")
        if not MIN_SCORE <= int(v) <= MAX_SCORE:
            raise ParseError(f"score {i} = {int(v)} outside {MIN_SCORE}..{MAX_SCORE}")
        scores.append(int(v))
    return scores
