"""Baseline defenses. Every module here is imported at plugin discovery; each imports only
the public contract, `bench.api`."""
