"""expq's user-facing side: configuration, the CLI, the SQL store and the embedded demo."""

__version__ = "0.1.0"
