"""Versioned, typed contracts: one module per file one stage writes and another reads."""
