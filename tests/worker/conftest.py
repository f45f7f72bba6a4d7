"""The worker tests reuse the learning-loop installations (a trained champion to copy)."""

from tests.loop.conftest import dataset_vectors, fresh_photos, make_system, trained_home

__all__ = ["dataset_vectors", "fresh_photos", "make_system", "trained_home"]
