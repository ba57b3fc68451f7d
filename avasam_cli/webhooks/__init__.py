"""Avasam's webhook contract, with no I/O: the decisions, the kinds, verifying and signing."""
