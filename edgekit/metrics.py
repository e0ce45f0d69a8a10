"""Accuracy figures from logits: top-k against labels, agreement and cosine against a reference."""

from __future__ import annotations

import numpy as np


def topk(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    if k == 1:
        return float(np.mean(logits.argmax(1) == labels))
    best = np.argsort(-logits, axis=1)[:, :k]
    return float(np.mean((best == labels[:, None]).any(1)))


def agreement(logits: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of images whose top-1 class matches the reference model's."""
    return float(np.mean(logits.argmax(1) == reference.argmax(1)))


def cosine(logits: np.ndarray, reference: np.ndarray) -> float:
    """Mean per-image cosine similarity of the (flattened) outputs: 1.0 means the same direction everywhere."""
    a, b = logits.reshape(len(logits), -1).astype(np.float64), reference.reshape(len(reference), -1).astype(np.float64)
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(num / np.maximum(den, 1e-12)))


def per_class_top1(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float | None]:
    pred = logits.argmax(1)
    return [float(np.mean(pred[labels == c] == c)) if np.any(labels == c) else None for c in range(num_classes)]
