"""Process-group plumbing for `torchrun` (DistributedDataParallel); a no-op for one process."""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self):
        return self.rank == 0

    @property
    def active(self):
        return self.world > 1

    def barrier(self):
        if self.active:
            dist.barrier()

    def sum(self, values):
        """Sum a list of numbers over all processes."""
        t = torch.tensor(values, dtype=torch.float64)
        if self.active:
            dist.all_reduce(t)
        return t.tolist()

    def all_equal(self, value):
        """True when every process holds the same (picklable) value."""
        if not self.active:
            return True
        values = [None] * self.world
        dist.all_gather_object(values, value)
        return all(v == values[0] for v in values)

    def average_(self, tensor):
        """Average a tensor in place over all processes."""
        if self.active:
            dist.all_reduce(tensor)
            tensor /= self.world


def init_distributed(device):
    """Join the process group that torchrun describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return Dist(rank=dist.get_rank(), world=dist.get_world_size())


def shutdown(d):
    """Leave the group together: a gloo process that tears down its pairs while a peer is still
    working (rank 0 writes the run's files alone) can abort in the C++ teardown."""
    if d.active:
        dist.barrier()
        dist.destroy_process_group()
