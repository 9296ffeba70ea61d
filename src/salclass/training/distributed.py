"""The device a process computes on, process-group setup for `torchrun`, and
the few collectives training needs.

One process per device. Without torchrun's environment (WORLD_SIZE unset or 1)
everything here degrades to a single process with no process group, so the
same training code runs on a laptop and on many GPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def is_primary(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        from salclass.errors import UserError

        raise UserError(f"environment variable {name}={value!r} is not an integer") from None


def resolve_device(name: str, world: World) -> torch.device:
    """The device of setting `name` (auto, cpu or cuda) for this process: on CUDA its local rank's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            from salclass.errors import UserError

            raise UserError("device: cuda was asked for, but this PyTorch sees no CUDA GPU (use device=cpu or auto)")
        return torch.device("cuda", world.local_rank)
    return torch.device("cpu")


def world_from_env() -> World:
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    local_world_size = _env_int("LOCAL_WORLD_SIZE", world_size)
    return World(rank, world_size, local_rank, local_world_size)


def setup(world: World, device_type: str) -> bool:
    """Join the process group torchrun describes; True if this call created it
    (and so must destroy it)."""
    if not world.distributed or dist.is_initialized():
        return False
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(backend=backend, init_method="env://")
    return True


def teardown(created: bool) -> None:
    if created and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor, world: World) -> torch.Tensor:
    """Sum of `t` over ranks (in place; returns `t`)."""
    if world.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(t: torch.Tensor, world: World) -> torch.Tensor:
    if world.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def all_gather_objects(obj, world: World) -> list:
    if not world.distributed:
        return [obj]
    out = [None] * world.world_size
    dist.all_gather_object(out, obj)
    return out
