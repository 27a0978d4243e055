"""Teacher-parallel execution: teachers split over processes, never gradients.

Teachers share no weights and no data, so there is nothing to all-reduce: plain DDP would
average different teachers' gradients, which is wrong here. Processes are started by Lightning
Fabric's public ``Fabric(strategy=DDPStrategy(...)).launch(function)``, which knows the same
launchers and cluster environments as the Trainer (spawned scripts, torchrun, SLURM, ...); every
process then takes ``teacher_ids[rank::world_size]`` and trains them with ordinary single-device
Trainers, so no collective can touch a gradient. Fabric's process group (gloo) serves only for
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
from lightning.fabric import Fabric
from lightning.fabric.strategies import DDPStrategy

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
        kind = Fabric(accelerator=accelerator, devices=1).device.type
        placement = Placement(accelerator="cpu" if kind == "cpu" else "gpu")
        return placement, function(placement)
    # gloo on every accelerator: the group carries two barriers, no tensor; ranks may finish hours apart
    strategy = DDPStrategy(process_group_backend="gloo", timeout=datetime.timedelta(days=7))
    fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy)
    return fabric.launch(_run_rank, function, num_nodes)


def _run_rank(fabric: Fabric, function: Callable[[Placement], Any], num_nodes: int) -> tuple[Placement, Any]:
    """One process: its placement, then ``function`` between two barriers (everyone decides what is left to do
    before anyone writes, and rank 0 gathers only once every rank has finished)."""
    placement = Placement(
        global_rank=fabric.global_rank, local_rank=fabric.local_rank, world_size=fabric.world_size,
        local_world_size=max(1, fabric.world_size // num_nodes), accelerator="cpu" if fabric.device.type == "cpu" else "gpu",
    )
    if placement.accelerator == "cpu":
        # each process uses its share of the cores instead of all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // placement.local_world_size))
    try:
        fabric.barrier()
        result = function(placement)
        fabric.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return placement, result
