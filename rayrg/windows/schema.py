"""The windows dataset: its contract (schema, version, readers) is :mod:`rayrg.contracts.windows`.

Kept so existing imports of ``WINDOW_SCHEMA`` / ``WINDOW_COLUMNS`` from here still work.
"""

from __future__ import annotations

from rayrg.contracts.windows import WINDOW_COLUMNS, WINDOW_SCHEMA

__all__ = ["WINDOW_COLUMNS", "WINDOW_SCHEMA"]
