"""saferlearn's MNIST teacher network, layer for layer, so its ``model.pth`` loads strictly."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class UCStubModel(nn.Module):
    """conv(1->32) -> conv(32->64) -> maxpool -> dropout -> fc(9216->128) -> dropout -> fc(128->10), log-softmax.

    Attribute names match saferlearn's class: a saferlearn state_dict loads with ``strict=True``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))  # (B, 32, 26, 26)
        x = F.relu(self.conv2(x))  # (B, 64, 24, 24)
        x = self.dropout1(F.max_pool2d(x, 2))  # (B, 64, 12, 12)
        x = F.relu(self.fc1(torch.flatten(x, 1)))  # (B, 128)
        return F.log_softmax(self.fc2(self.dropout2(x)), dim=1)  # (B, 10)


def ucstub_forward(
    params: dict[str, torch.Tensor], x: torch.Tensor, keep1: torch.Tensor, keep2: torch.Tensor
) -> torch.Tensor:
    """``UCStubModel`` as a pure function of its parameters, with explicit dropout masks.

    Used under ``torch.func.vmap`` over stacked teachers; the masks (already scaled by
    1 / (1 - p), or all ones in evaluation) come from each teacher's own generator, so a
    teacher's dropout does not depend on the global RNG or on the teachers beside it.
    x (B, 1, 28, 28) -> log-probabilities (B, 10).
    """
    x = F.relu(F.conv2d(x, params["conv1.weight"], params["conv1.bias"]))
    x = F.relu(F.conv2d(x, params["conv2.weight"], params["conv2.bias"]))
    x = F.max_pool2d(x, 2) * keep1  # (B, 64, 12, 12)
    x = F.relu(F.linear(torch.flatten(x, 1), params["fc1.weight"], params["fc1.bias"]))
    return F.log_softmax(F.linear(x * keep2, params["fc2.weight"], params["fc2.bias"]), dim=1)
