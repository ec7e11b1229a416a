"""Built-in IQA models. Every module here is imported at plugin discovery."""
