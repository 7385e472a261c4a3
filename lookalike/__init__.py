"""lookalike: local image similarity search."""
__version__ = "0.1.0"
