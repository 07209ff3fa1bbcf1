"""Contracts: one module per file that one stage writes and another reads.

A contract module owns its file's format: a ``VERSION`` int, the typed schema (pydantic models
with ``extra="forbid"`` for JSON, a pyarrow schema for Parquet) and the ``write_*`` / ``read_*``
functions that are the only way the file is written and read. Writers stamp ``VERSION``;
readers read a version they are compatible with and refuse any other in one line naming it.
"""
