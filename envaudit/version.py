"""envaudit's version: a leaf module, so that modules deep in the package can name it without
importing the package's public API (``envaudit/__init__.py``)."""

__version__ = "0.1.0"
