"""Built-in defenses: every module here is imported at start-up and registers itself."""
