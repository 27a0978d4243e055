"""Teacher-parallel execution: teachers split over processes, never gradients.

Teachers share no weights and no data, so there is nothing to all-reduce: plain DDP would
average different teachers' gradients, which is wrong here. Processes are started by Lightning
Fabric's public ``Fabric(strategy=DDPStrategy(...)).launch(function)``, which knows the same
launchers and cluster environments as the Trainer (spawned scripts, torchrun, SLURM, ...); every
process then takes ``teacher_ids[rank::world_size]`` and trains them with ordinary single-device
Trainers, so no collective can touch a gradient. Fabric's process group (gloo) only starts the
ranks: rank 0 then hosts a small key-value store (its port sent over the group) and the group is
closed before any Trainer runs, because each ``fit``/``predict`` would otherwise open a collective
(Lightning's ``prepare_data`` barrier) that ranks with fewer groups, or none, never join. Through
the store rank 0 hands out the pending teachers (decided once, before anyone writes) and every rank
says when it is done; each wait is bounded (a start timeout, then heartbeats).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import torch
import torch.distributed as dist
from lightning.fabric import Fabric
from lightning.fabric.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_only

from pate_lightning.errors import PateError

log = logging.getLogger(__name__)

# Every wait is bounded. Starting: all ranks meet and rank 0 lists the pending teachers (seconds to minutes).
START_TIMEOUT = datetime.timedelta(minutes=30)
# Finishing: a rank may train for hours after another is done, so the wait is on its heartbeat instead.
HEARTBEAT_SECONDS = 10.0
STALL_SECONDS = 300.0
POLL_SECONDS = 0.5


def is_global_zero() -> bool:
    """False in the other teacher-parallel processes, which re-run the command only to train their share:
    whatever is not teacher-parallel (pipeline commands, reports) runs once, in rank 0."""
    return rank_zero_only.rank == 0


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


def launch(
    trainer_config: dict[str, Any], plan: Callable[[], list[int]], function: Callable[[Placement, list[int]], Any]
) -> tuple[Placement, Any]:
    """Run ``function(placement, todo)`` in every teacher-parallel process, ``todo = plan()`` decided once on
    rank 0; returns this process's placement and result."""
    accelerator = trainer_config.get("accelerator") or "auto"
    devices = trainer_config.get("devices", 1)
    num_nodes = int(trainer_config.get("num_nodes") or 1)
    if _device_count(devices) == 1 and num_nodes == 1:
        kind = Fabric(accelerator=accelerator, devices=1).device.type
        placement = Placement(accelerator="cpu" if kind == "cpu" else "gpu")
        return placement, function(placement, plan())
    # gloo on every accelerator: the group only starts the ranks and hands out the rendezvous of the work
    strategy = DDPStrategy(process_group_backend="gloo", timeout=START_TIMEOUT)
    fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy)
    return fabric.launch(_run_rank, plan, function, num_nodes)


def _run_rank(
    fabric: Fabric, plan: Callable[[], list[int]], function: Callable[[Placement, list[int]], Any], num_nodes: int
) -> tuple[Placement, Any]:
    """One process: rank 0 decides what is left to do before anyone writes, every rank does its share with no
    process group open, and every rank waits until all have finished (bounded: see ``_wait_for_all``)."""
    placement = Placement(
        global_rank=fabric.global_rank, local_rank=fabric.local_rank, world_size=fabric.world_size,
        local_world_size=max(1, fabric.world_size // num_nodes), accelerator="cpu" if fabric.device.type == "cpu" else "gpu",
    )
    if placement.accelerator == "cpu":
        # each process uses its share of the cores instead of all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // placement.local_world_size))
    try:
        store = _work_store(placement)
    finally:
        # Lightning's Trainer opens a collective per fit/predict while a process group is open (prepare_data's
        # barrier); ranks with different numbers of groups would wait in it for ever, so none stays open
        if dist.is_initialized():
            dist.destroy_process_group()
    if placement.global_rank == 0:
        store.set("todo", json.dumps(plan()))
    todo = json.loads(store.get("todo"))  # waits for rank 0, at most START_TIMEOUT
    beating = threading.Event()
    heartbeat = threading.Thread(target=_beat, args=(store, placement.global_rank, beating), daemon=True)
    heartbeat.start()
    try:
        result = function(placement, todo)
    finally:
        beating.set()
    store.set(f"done/{placement.global_rank}", "1")
    _wait_for_all(store, placement.world_size, "done")
    store.set(f"left/{placement.global_rank}", "1")
    if placement.global_rank == 0:
        _wait_for_all(store, placement.world_size, "left")  # rank 0 hosts the store: it leaves last
    return placement, result


def _work_store(placement: Placement) -> dist.TCPStore:
    """A key-value store hosted by rank 0 on a free port (sent to the others over the process group)."""
    host = os.environ.get("MASTER_ADDR", "127.0.0.1")
    port = torch.zeros(1, dtype=torch.int64)
    store = None
    if placement.global_rank == 0:
        store = dist.TCPStore(host, 0, placement.world_size, True, timeout=START_TIMEOUT, wait_for_workers=False)
        port[0] = store.port
    dist.broadcast(port, src=0)
    if store is None:
        store = dist.TCPStore(host, int(port[0]), placement.world_size, False, timeout=START_TIMEOUT)
    return store


def _beat(store: dist.TCPStore, rank: int, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        store.add(f"beat/{rank}", 1)


def _wait_for_all(store: dist.TCPStore, world_size: int, key: str) -> None:
    """Waits until every rank has set ``{key}/{rank}``; a rank may work for hours, but one whose heartbeat
    stops for ``STALL_SECONDS`` (killed, or hung) ends the wait with an error naming it."""
    last_beat: dict[int, tuple[int, float]] = {}
    while True:
        missing = [rank for rank in range(world_size) if not store.check([f"{key}/{rank}"])]
        if not missing:
            return
        now = time.monotonic()
        for rank in missing:
            beats = store.add(f"beat/{rank}", 0)
            if rank not in last_beat or last_beat[rank][0] != beats:
                last_beat[rank] = (beats, now)
            elif now - last_beat[rank][1] > STALL_SECONDS:
                raise PateError(
                    f"teacher-parallel process {rank} of {world_size} stopped answering (no heartbeat for "
                    f"{STALL_SECONDS:.0f}s); its teachers without outputs are redone by the next run."
                )
        time.sleep(POLL_SECONDS)
