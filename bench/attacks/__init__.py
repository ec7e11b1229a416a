"""Built-in attacks. Every module here is imported at plugin discovery."""
