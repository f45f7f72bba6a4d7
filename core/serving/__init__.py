"""Serving helpers shared by the servers: the micro-batcher."""

from core.serving.batcher import MicroBatcher

__all__ = ["MicroBatcher"]
