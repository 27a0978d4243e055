"""L2 distances between flattened images: nearest shard image, and "closer than a threshold" pairs.

Both use the matmul expansion ``||a||^2 + ||b||^2 - 2ab`` for speed and re-measure the pairs where
float32 rounding could decide the answer, so an exact copy has distance 0 and a pair at the
threshold is judged exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_NN_CANDIDATES = 4  # approximate neighbours re-measured exactly per candidate
_EXPANSION_TOL = 2e-4  # float32 rounding bound of ||a||^2 + ||b||^2 - 2ab, relative to ||a||^2 + ||b||^2


def flatten(x: Tensor, name: str) -> Tensor:
    """(N, D): each image of ``x`` as one row, floating point; a clear error for anything that is not (N, ...)."""
    if not isinstance(x, Tensor) or x.dim() < 1:
        raise ValueError(f"{name} must be a tensor of shape (N, ...), got {type(x).__name__}")
    x = x.reshape(x.shape[0], math.prod(x.shape[1:]))
    return x if x.is_floating_point() else x.float()


def nearest_neighbor_distances(candidates: Tensor, shard: Tensor, chunk_size: int = 4096) -> Tensor:
    """L2 distance from each candidate to its nearest shard image.

    The matmul expansion ``||a||^2 + ||b||^2 - 2ab`` ranks the shard in chunks of
    ``chunk_size`` x ``chunk_size``; the best few are then re-measured as ``||a - b||`` so that
    an exact copy of a shard image gets distance 0, not the expansion's rounding noise.

    Args:
        candidates: (N, D) or (N, 1, 28, 28).
        shard: (M, D) or (M, 1, 28, 28), M >= 1.
        chunk_size: rows per chunk on both sides; memory is O(chunk_size ** 2).

    >>> shard = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    >>> nearest_neighbor_distances(torch.tensor([[3.0, 4.0], [0.0, 1.0]]), shard).tolist()
    [0.0, 1.0]
    """
    candidates, shard = flatten(candidates, "candidates"), flatten(shard, "shard")
    if shard.shape[0] == 0:
        raise ValueError("shard is empty: nearest-neighbour distances need at least one shard image")
    if candidates.shape[1] != shard.shape[1]:
        raise ValueError(f"candidates have {candidates.shape[1]} values per image, shard has {shard.shape[1]}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    shard = shard.to(candidates.dtype)
    shard_sq = (shard * shard).sum(1)  # (M,)
    k = min(_NN_CANDIDATES, shard.shape[0])
    out = torch.empty(candidates.shape[0], dtype=candidates.dtype, device=candidates.device)
    for start in range(0, candidates.shape[0], chunk_size):
        block = candidates[start : start + chunk_size]  # (C, D)
        block_sq = (block * block).sum(1)
        best_sq = best_idx = None
        for s_start in range(0, shard.shape[0], chunk_size):
            part = shard[s_start : s_start + chunk_size]
            approx = block_sq[:, None] + shard_sq[None, s_start : s_start + part.shape[0]] - 2 * block @ part.T
            idx = torch.arange(s_start, s_start + part.shape[0], device=block.device).expand_as(approx)
            if best_sq is not None:
                approx, idx = torch.cat([best_sq, approx], 1), torch.cat([best_idx, idx], 1)
            best_sq, pos = approx.topk(min(k, approx.shape[1]), dim=1, largest=False)  # (C, k)
            best_idx = idx.gather(1, pos)
        exact = torch.stack([((block - shard[best_idx[:, j]]) ** 2).sum(1) for j in range(k)], 1)
        out[start : start + block.shape[0]] = exact.min(1).values.sqrt()
    return out



def closer_than(a: Tensor, a_sq: Tensor, b: Tensor, b_sq: Tensor, threshold: float) -> Tensor:
    """(A, B) bool: ||a_i - b_j|| < threshold; pairs within rounding of the threshold are re-measured exactly."""
    total = a_sq[:, None] + b_sq[None, :]
    approx = total - 2 * a @ b.T  # (A, B)
    limit = threshold**2
    close = approx < limit
    unsure = (approx - limit).abs() <= _EXPANSION_TOL * total + 1e-6
    if unsure.any():
        rows, cols = unsure.nonzero(as_tuple=True)
        close[rows, cols] = ((a[rows].double() - b[cols].double()) ** 2).sum(1) < limit
    return close

