"""Teacher-parallel execution: teachers split over processes, never gradients.

Teachers share no weights and no data, so there is nothing to all-reduce: plain DDP would
average different teachers' gradients, which is wrong here. Instead we use only Lightning's
launching machinery. A probe Trainer with ``strategy="ddp"`` and the user's ``devices`` /
``num_nodes`` builds the launcher and cluster environment (spawned scripts, torchrun, SLURM,
...); every process then takes ``teacher_ids[rank::world_size]`` and trains them with ordinary
single-device Trainers, so no collective can touch a gradient. A gloo group serves only for
two barriers: before work (every rank sees the same pending teachers) and after (rank 0 gathers).
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import torch
import torch.distributed as dist
from lightning.pytorch import Trainer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    """Where this process sits: its rank among the teacher workers and its device."""

    global_rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    accelerator: str = "cpu"

    def share(self, teacher_ids: list[int]) -> list[int]:
        """This rank's teachers: a strided slice, so ranks get near-equal counts.

        >>> Placement(global_rank=1, world_size=3).share(list(range(8)))
        [1, 4, 7]
        """
        return teacher_ids[self.global_rank :: self.world_size]

    def device_kwargs(self) -> dict[str, Any]:
        """Trainer arguments for this rank's single-device Trainers."""
        if self.accelerator == "cpu":
            return {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto"}
        return {"accelerator": self.accelerator, "devices": [self.local_rank], "num_nodes": 1, "strategy": "auto"}


def _device_count(devices: Union[int, str, list[int], None]) -> Optional[int]:
    if isinstance(devices, list):
        return len(devices)
    if isinstance(devices, int):
        return devices
    if isinstance(devices, str) and devices.isdigit():
        return int(devices)
    return None  # "auto" / -1: let Lightning decide


def launch(trainer_config: dict[str, Any], function: Callable[[Placement], Any]) -> tuple[Placement, Any]:
    """Run ``function(placement)`` in every teacher-parallel process; returns this process's placement and result."""
    accelerator = trainer_config.get("accelerator") or "auto"
    devices = trainer_config.get("devices", 1)
    num_nodes = int(trainer_config.get("num_nodes") or 1)
    if _device_count(devices) == 1 and num_nodes == 1:
        probe = Trainer(accelerator=accelerator, devices=1, logger=False, enable_progress_bar=False)
        placement = Placement(accelerator="cpu" if probe.strategy.root_device.type == "cpu" else "gpu")
        return placement, function(placement)
    probe = Trainer(
        accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy="ddp",
        logger=False, enable_progress_bar=False, enable_checkpointing=False,
    )
    strategy = probe.strategy
    kind = "cpu" if strategy.root_device.type == "cpu" else "gpu"

    def run_rank() -> Any:
        strategy.set_world_ranks()
        placement = Placement(
            global_rank=strategy.global_rank, local_rank=strategy.local_rank, world_size=strategy.world_size,
            local_world_size=strategy.num_processes, accelerator=kind,
        )
        if kind == "cpu":
            # each process uses its share of the cores instead of all of them
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // placement.local_world_size))
        # Barriers before and after: every rank decides what is left to do before anyone writes,
        # and rank 0 gathers only once every rank has finished.
        _init_group(strategy, placement)
        try:
            _barrier(placement)
            result = function(placement)
            _barrier(placement)
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
        return placement, result

    return strategy.launcher.launch(run_rank, trainer=probe)


def _init_group(strategy: Any, placement: Placement) -> None:
    """A gloo group used only for barriers (ranks may finish hours apart, hence the long timeout)."""
    env = strategy.cluster_environment
    os.environ.setdefault("MASTER_ADDR", env.main_address)
    os.environ.setdefault("MASTER_PORT", str(env.main_port))
    dist.init_process_group(
        "gloo", rank=placement.global_rank, world_size=placement.world_size, timeout=datetime.timedelta(days=7)
    )


def _barrier(placement: Placement) -> None:
    if placement.world_size > 1:
        dist.barrier()
