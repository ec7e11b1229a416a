"""Baseline defenses. Every public module here is imported at plugin discovery; each imports
only the public contract, `bench.api`, and this package's private helpers (`_purification`,
`_training`, `_published`: shared metadata, parameter checks, losses and the loading of
published weights, so no baseline repeats another)."""
