"""The application layer: one API of use cases for every front end (see ``design.md``)."""

from core.app.application import App
from core.app.protocol import ProductApi

__all__ = ["App", "ProductApi"]
