"""A plain MLP: ``depth`` hidden layers of ``width`` units with ReLU."""

from __future__ import annotations

from torch import Tensor, nn


class MLP(nn.Module):
    def __init__(self, inputs: int, outputs: int, width: int, depth: int):
        super().__init__()
        self.output_layer = f"net.{2 * depth}.weight"  # structured pruning keeps its outputs
        layers: list[nn.Module] = []
        size = inputs
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.ReLU()]
            size = width
        layers.append(nn.Linear(size, outputs))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
