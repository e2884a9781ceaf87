"""SparseGPT (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be
Accurately Pruned in One-Shot"): row-wise optimal brain surgeon on one linear layer.

With ``H = 2/N · XᵀX`` from the calibration inputs (dead inputs, ``H_jj = 0``, get
``H_jj = 1`` and zero weights), damped by ``damp · mean(diag H)``, and ``U`` the upper
Cholesky factor of ``H⁻¹``: columns are visited left to right in blocks; at the start of a
block (or every M columns for N:M) the mask is chosen by ``w² / U_jj²``; each pruned weight's
error ``e = w / U_jj`` is spread over the columns to its right by ``U[j, j:]``, within the
block at once and onto later blocks lazily (one matrix product per block). Row p of ``U``
is the OBS update of the sub-problem on columns ≥ p, so with one pruned weight in column 0
this is exactly OBS: ``δw = −(w_p / [H⁻¹]_pp) · H⁻¹[:, p]``.

``mask="block"`` takes one threshold over the whole block of columns, as the authors'
code does; ``"row"`` prunes the same fraction of every row within the block.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from spx.kernels.nm import nm_mask
from spx.workers.posttrain import drop_per_row, keep_in_layer


def inverse_factor(H: Tensor, damp: float) -> tuple[Tensor, Tensor]:
    """(U, dead): the upper Cholesky factor of the damped ``H⁻¹`` and the dead inputs."""
    H = H.clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    H += damp * torch.diag(H).mean() * torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(H))
    return torch.linalg.cholesky(inverse, upper=True), dead


@torch.no_grad()
def sparsegpt_prune(
    weight: Tensor,
    H: Tensor,
    sparsity: float,
    nm: tuple[int, int] | None = None,
    block: int = 128,
    damp: float = 0.01,
    mask: Literal["row", "block"] = "row",
) -> Tensor:
    """Prune ``weight`` (out x in, edited in place) and return its bool keep-mask."""
    W = weight.detach().to(torch.float32).clone()
    U, dead = inverse_factor(H.to(torch.float32), damp)
    W[:, dead] = 0.0
    keep = torch.ones_like(W, dtype=torch.bool)
    columns = W.shape[1]
    for i1 in range(0, columns, block):
        i2 = min(i1 + block, columns)
        W1, U1 = W[:, i1:i2].clone(), U[i1:i2, i1:i2]
        E1 = torch.zeros_like(W1)
        d = torch.diag(U1)
        if nm is None:
            score = W1**2 / d.unsqueeze(0) ** 2
            if mask == "row":  # each row's budget spread so that its total is exact
                k1 = drop_per_row(score, int(i2 * sparsity) - int(i1 * sparsity))
            else:
                k1 = keep_in_layer(score, sparsity)
        else:
            k1 = torch.ones_like(W1, dtype=torch.bool)
        for j in range(i2 - i1):
            if nm is not None and j % nm[1] == 0:
                group = slice(j, j + nm[1])
                k1[:, group] = nm_mask(W1[:, group] ** 2 / d[group].unsqueeze(0) ** 2, *nm)
            w = W1[:, j]
            e = (w - w * k1[:, j]) / U1[j, j]
            W1[:, j:] -= e.unsqueeze(1) * U1[j, j:].unsqueeze(0)
            E1[:, j] = e
        W[:, i1:i2], keep[:, i1:i2] = W1 * k1, k1
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    weight.copy_(W.to(weight.dtype))
    return keep
