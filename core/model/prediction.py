"""What a classification answers, in a module free of torch so that thin clients (the
desktop in remote mode) can read the edge server's answers without loading a model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    probabilities: dict[str, float]
    model_version: int
    backbone: str

    def to_dict(self) -> dict[str, Any]:
        """The edge server's answer for one photo (the seed's field names)."""
        return {
            "prediction": self.label,
            "confidence": self.confidence,
            "probabilities": self.probabilities,
            "model_version": self.model_version,
            "backbone": self.backbone,
        }

    @classmethod
    def from_dict(cls, item: dict[str, Any]) -> Prediction:
        """The inverse of :meth:`to_dict`, for clients of the edge server."""
        return cls(
            label=str(item["prediction"]),
            confidence=float(item["confidence"]),
            probabilities={label: float(p) for label, p in item["probabilities"].items()},
            model_version=int(item["model_version"]),
            backbone=str(item["backbone"]),
        )
