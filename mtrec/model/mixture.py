"""Mixtures between the shared user state and the task towers: MMoE, PLE, shared-bottom."""

from __future__ import annotations

import torch
from torch import nn


def _expert(dim: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout))


class TaskMixture(nn.Module):
    """Gives each task its own mix of experts over the shared state.

    * ``mmoe``: K shared experts; task t gets ``sum_k softmax(W_t h)_k E_k(h)`` (Ma et al. 2018).
    * ``ple``: shared experts plus ``task_experts`` per task, one gate per task over its own
      and the shared experts (the CGC level of Tang et al. 2020).
    * ``shared``: one shared MLP for all tasks (the ablation baseline).

    Args:
        dim: Width.
        tasks: Task names, in order.
        kind: ``mmoe``, ``ple`` or ``shared``.
        experts: Number of shared experts.
        task_experts: Task-specific experts per task (PLE only).
        dropout: Dropout inside experts.
    """

    def __init__(
        self,
        dim: int,
        tasks: tuple[str, ...],
        kind: str = "mmoe",
        experts: int = 4,
        task_experts: int = 1,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if kind not in ("mmoe", "ple", "shared"):
            raise ValueError(f"unknown mixture {kind!r}; use 'mmoe', 'ple' or 'shared'")
        self.kind = kind
        self.tasks = tasks
        n_shared = 1 if kind == "shared" else experts
        self.shared = nn.ModuleList(_expert(dim, dropout) for _ in range(n_shared))
        n_own = task_experts if kind == "ple" else 0
        self.own = nn.ModuleDict(
            {t: nn.ModuleList(_expert(dim, dropout) for _ in range(n_own)) for t in tasks}
        )
        self.gates = nn.ModuleDict(
            {t: nn.Linear(dim, n_shared + n_own) for t in tasks} if kind != "shared" else {}
        )

    def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-task inputs. ``h`` is (..., dim); returns {task: (..., dim)}."""
        shared = [e(h) for e in self.shared]
        if self.kind == "shared":
            return dict.fromkeys(self.tasks, shared[0])
        out = {}
        for t in self.tasks:
            experts = torch.stack(shared + [e(h) for e in self.own[t]], dim=-2)  # (..., K, dim)
            gate = torch.softmax(self.gates[t](h), dim=-1)[..., None]  # (..., K, 1)
            out[t] = (gate * experts).sum(dim=-2)
        return out
