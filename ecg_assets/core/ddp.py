"""Training on several processes (torchrun + DistributedDataParallel).

`Ranks` says which process this is and runs the few collective steps the training loop needs:
rank 0 validates and writes, the others wait for its decision. `SINGLE_PROCESS` (the in-process
path) has no process group, and its collective steps return their argument unchanged.

torchrun sets `RANK`, `WORLD_SIZE`, `LOCAL_RANK` and the rendezvous address in the environment;
`torch.distributed` reads them (`init_method="env://"`), this module never does.
"""

from __future__ import annotations

import datetime
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn

# How long the other ranks wait for rank 0 (validation and checkpoint writing) before giving up.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)
# Offsets the seed of each rank's own random streams, away from the shared one.
_RANK_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class Ranks:
    """This process among the training processes: rank `rank` of `world_size`, device `local_rank`.

    `distributed` is True when a process group exists (under torchrun, even with one process): the
    model is wrapped in DistributedDataParallel and the collective methods talk to the other ranks.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False
    collective_device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """Rank 0 validates, logs and writes checkpoints."""
        return self.rank == 0

    def own_seed(self, seed: int) -> int:
        """Seed of this rank's own streams (augmentation, dropout); `seed` itself for a single process."""
        return seed if self.world_size == 1 else seed + _RANK_SEED_STRIDE * (self.rank + 1)

    def per_rank_batch(self, batch_size: int) -> int:
        """Records per process in a batch: `batch_size` is the global batch, split evenly across the ranks."""
        if batch_size % self.world_size or batch_size // self.world_size < 2:
            raise ValueError(
                f"batch_size {batch_size} is the global batch: it must be a multiple of the {self.world_size} "
                "training processes, with at least 2 records per process (BatchNorm needs 2)"
            )
        return batch_size // self.world_size

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every rank."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, device=torch.device(self.collective_device))
        return box[0]

    def all_gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum of `values` over the ranks (float64)."""
        if not self.distributed:
            return list(values)
        total = torch.tensor(values, dtype=torch.float64, device=self.collective_device)
        dist.all_reduce(total)
        return total.tolist()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def sync_batch_norm(self, model: nn.Module) -> nn.Module:
        """BatchNorm statistics over the global batch on GPUs (SyncBatchNorm); CPU tensors keep per-rank BatchNorm.

        SyncBatchNorm only runs on GPU-like devices in PyTorch; parameter and buffer names are
        unchanged, so checkpoints load into the plain model either way.
        """
        if self.distributed and self.world_size > 1 and self.collective_device != "cpu":
            return nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model

    def data_parallel(self, model: nn.Module) -> nn.Module:
        """`model` in DistributedDataParallel (gradients averaged over the ranks), or `model` itself."""
        if not self.distributed:
            return model
        device_ids = None if self.collective_device == "cpu" else [self.local_rank]
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


SINGLE_PROCESS = Ranks()


@contextmanager
def torchrun_process_group(device_type: str) -> Iterator[Ranks]:
    """Join the process group torchrun set up: NCCL on CUDA (one GPU per local rank), gloo on the CPU."""
    if not dist.is_torchelastic_launched():
        raise RuntimeError("not launched by torchrun: run it as `torchrun --nproc_per_node=N -m ...`")
    cuda = device_type == "cuda"
    local_rank = dist.get_node_local_rank()
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
    ranks = Ranks(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        distributed=True,
        collective_device=f"cuda:{local_rank}" if cuda else "cpu",
    )
    try:
        yield ranks
    finally:
        dist.destroy_process_group()
