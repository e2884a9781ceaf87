"""The communicator a multi-worker trial synchronises through (ALGORITHMS.md §1a, §1b, §1d).

Three collectives are all the outer steps need: a dense mean all-reduce (DDP gradients,
DiLoCo pseudo-gradients), an all-gather of variable-length byte buffers (SparseLoCo's packed
payloads: each worker's index set differs, so it is *not* an all-reduce, §1f pitfall 3), and
a broadcast from rank 0 (initial weights, masks, the stop decision).

:class:`TorchComm` runs them over ``torch.distributed`` (gloo on CPU, NCCL with CUDA), with a
timeout so a lost worker makes the others fail instead of hang. :class:`ThreadComm` runs
them between threads of one process, for unit tests of the outer steps.

>>> import threading
>>> group = ThreadGroup(2)
>>> out = [None, None]
>>> def work(rank):
...     comm = ThreadComm(group, rank)
...     t = torch.tensor([float(rank)])
...     comm.all_reduce_mean(t)
...     out[rank] = (t.item(), [b.tolist() for b in comm.all_gather_bytes(
...         torch.tensor([rank] * (rank + 1), dtype=torch.uint8))])
>>> threads = [threading.Thread(target=work, args=(r,)) for r in range(2)]
>>> _ = [t.start() for t in threads]; _ = [t.join() for t in threads]
>>> out[0]
(0.5, [[0], [1, 1]])
"""

from __future__ import annotations

import socket
import threading
from datetime import timedelta
from typing import Protocol

import torch
from torch import Tensor


class Communicator(Protocol):
    rank: int
    world: int

    def all_reduce_mean(self, tensor: Tensor) -> None:
        """Replace ``tensor`` in place by its mean over all workers."""
        ...

    def all_gather_bytes(self, buf: Tensor) -> list[Tensor]:
        """Every worker's uint8 buffer (lengths may differ), in rank order."""
        ...

    def broadcast(self, tensor: Tensor, src: int = 0) -> None:
        """Overwrite ``tensor`` in place with rank ``src``'s."""
        ...

    def all_reduce_max(self, tensor: Tensor) -> None:
        """Replace ``tensor`` in place by its elementwise max over all workers."""
        ...


class TorchComm:
    """A :class:`Communicator` over the default ``torch.distributed`` process group."""

    def __init__(self, rank: int, world: int, device: torch.device | None = None):
        self.rank, self.world = rank, world
        self.device = device or torch.device("cpu")

    def all_reduce_mean(self, tensor: Tensor) -> None:
        import torch.distributed as dist

        work = tensor.to(self.device)
        dist.all_reduce(work, op=dist.ReduceOp.SUM)
        tensor.copy_(work.div_(self.world))

    def all_reduce_max(self, tensor: Tensor) -> None:
        import torch.distributed as dist

        work = tensor.to(self.device)
        dist.all_reduce(work, op=dist.ReduceOp.MAX)
        tensor.copy_(work)

    def all_gather_bytes(self, buf: Tensor) -> list[Tensor]:
        import torch.distributed as dist

        size = torch.tensor([buf.numel()], dtype=torch.int64, device=self.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world)]
        dist.all_gather(sizes, size)
        lengths = [int(s.item()) for s in sizes]
        padded = torch.zeros(max(lengths), dtype=torch.uint8, device=self.device)
        padded[: buf.numel()] = buf.to(self.device)
        outs = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(outs, padded)
        return [o[:n].cpu() for o, n in zip(outs, lengths, strict=True)]

    def broadcast(self, tensor: Tensor, src: int = 0) -> None:
        import torch.distributed as dist

        work = tensor.to(self.device)
        dist.broadcast(work, src=src)
        tensor.copy_(work)


def init_torch(
    rank: int, world: int, host: str, port: int, timeout_s: float, cuda: bool = False
) -> TorchComm:
    """Join the process group at ``tcp://host:port`` (rank 0 hosts the store): NCCL when
    ``cuda``, else gloo. A collective waiting longer than ``timeout_s`` raises."""
    import torch.distributed as dist

    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(
        backend,
        init_method=f"tcp://{host}:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=timeout_s),
    )
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else None
    return TorchComm(rank, world, device)


def shutdown_torch() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    """A TCP port that was free a moment ago (the rendezvous of one worker group)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


class ThreadGroup:
    """Shared slots and a barrier for ``world`` threads that stand in for workers."""

    def __init__(self, world: int, timeout_s: float = 60.0):
        self.world = world
        self.slots: list[Tensor | None] = [None] * world
        self.barrier = threading.Barrier(world, timeout=timeout_s)


class ThreadComm:
    """A :class:`Communicator` between threads of one process (tests, no Ray, no sockets)."""

    def __init__(self, group: ThreadGroup, rank: int):
        self.group, self.rank, self.world = group, rank, group.world

    def _exchange(self, tensor: Tensor) -> list[Tensor]:
        self.group.slots[self.rank] = tensor.detach().clone()
        self.group.barrier.wait()
        seen = [s.clone() for s in self.group.slots if s is not None]
        self.group.barrier.wait()  # nobody overwrites a slot before all have read it
        return seen

    def all_reduce_mean(self, tensor: Tensor) -> None:
        tensor.copy_(torch.stack(self._exchange(tensor)).sum(0).div_(self.world))

    def all_reduce_max(self, tensor: Tensor) -> None:
        tensor.copy_(torch.stack(self._exchange(tensor)).amax(0))

    def all_gather_bytes(self, buf: Tensor) -> list[Tensor]:
        return self._exchange(buf)

    def broadcast(self, tensor: Tensor, src: int = 0) -> None:
        tensor.copy_(self._exchange(tensor)[src])
