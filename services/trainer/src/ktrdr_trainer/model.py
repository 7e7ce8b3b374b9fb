"""The networks: an MLP over one row of features, an LSTM over a window of rows."""

from __future__ import annotations

import torch
from ktrdr_shared.messages import LstmModel, MlpModel
from torch import nn

from ktrdr_trainer.labels import CLASSES


class MlpClassifier(nn.Module):
    """Linear -> ReLU -> Dropout per hidden layer, then a linear head over the classes."""

    def __init__(self, inputs: int, hidden_sizes: list[int], dropout: float, classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = inputs
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits for ``[batch, inputs]``."""
        return self.net(x)  # type: ignore[no-any-return]


class LstmClassifier(nn.Module):
    """An LSTM over ``[batch, seq_len, inputs]``; the last step's state feeds a linear head."""

    def __init__(self, inputs: int, spec: LstmModel, classes: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            inputs,
            spec.hidden_size,
            num_layers=spec.layers,
            batch_first=True,
            dropout=spec.dropout if spec.layers > 1 else 0.0,
        )
        self.head = nn.Sequential(nn.Dropout(spec.dropout), nn.Linear(spec.hidden_size, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits for ``[batch, seq_len, inputs]``."""
        out, _ = self.lstm(x)
        return self.head(out[:, -1])  # type: ignore[no-any-return]


def build_model(spec: MlpModel | LstmModel, inputs: int, classes: int = len(CLASSES)) -> nn.Module:
    """Return a freshly initialised network for a model spec (seed torch first)."""
    if isinstance(spec, LstmModel):
        return LstmClassifier(inputs, spec, classes)
    return MlpClassifier(inputs, list(spec.hidden_sizes), spec.dropout, classes)


def window_length(spec: MlpModel | LstmModel) -> int:
    """Return how many consecutive rows one sample spans."""
    return spec.seq_len if isinstance(spec, LstmModel) else 1


def parameter_count(model: nn.Module) -> int:
    """Return the number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
