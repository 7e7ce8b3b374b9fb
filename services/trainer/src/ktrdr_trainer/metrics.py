"""Classification metrics of test-split predictions (NumPy, no torch)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ktrdr_trainer.labels import CLASSES


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Return counts with true classes as rows and predicted classes as columns."""
    flat = np.bincount(truth * classes + predicted, minlength=classes * classes)
    return flat.reshape(classes, classes)


def classification_metrics(
    truth: np.ndarray, predicted: np.ndarray, majority_class: int, names: tuple[str, ...] = CLASSES
) -> dict[str, Any]:
    """Return accuracy, per-class precision/recall/F1, macro F1 and the confusion matrix.

    Args:
        truth: true classes of the samples.
        predicted: predicted classes.
        majority_class: the most common class of the *training* split; always
            predicting it is the baseline a model has to beat.
        names: class names, by index.
    """
    k = len(names)
    matrix = confusion_matrix(truth.astype(np.int64), predicted.astype(np.int64), k)
    hits = np.diag(matrix).astype(np.float64)
    predicted_n, true_n = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(hits, predicted_n, out=np.zeros(k), where=predicted_n > 0)
    recall = np.divide(hits, true_n, out=np.zeros(k), where=true_n > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros(k), where=total > 0)
    samples = int(matrix.sum())
    return {
        "samples": samples,
        "accuracy": float(hits.sum() / samples) if samples else 0.0,
        "majority_class": names[majority_class],
        "majority_baseline_accuracy": float(true_n[majority_class] / samples) if samples else 0.0,
        "macro_f1": float(f1.mean()),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(true_n[i]),
            }
            for i, name in enumerate(names)
        },
        "confusion_matrix": matrix.tolist(),
        "confusion_matrix_axes": "rows: true class, columns: predicted class, in class order",
        "classes": list(names),
    }
