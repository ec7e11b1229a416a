"""Baseline defenses. Every public module here is imported at plugin discovery; each imports
only the public contract, `bench.api`, and this package's private helpers (`_purification`,
`_training`: shared metadata, parameter checks and losses, so no baseline repeats another)."""
