"""smartrec: a self-hostable smart recommendation engine."""

__version__ = "0.1.0"

__all__ = ["__version__"]
