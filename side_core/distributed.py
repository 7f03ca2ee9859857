"""Several processes, GPUs or nodes: who is who, and the few collectives the stages need.

A launcher starts the same command in every process and tells each one who it is through the
environment: ``accelerate launch`` and ``torchrun`` set ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE`` and ``MASTER_ADDR``/``MASTER_PORT``. :func:`start` reads them, lets
accelerate's ``PartialState`` open the process group (gloo on CPUs, nccl on GPUs) and gives each
process the GPU of its local rank. Without a launcher nothing is opened and every helper here is
a no-op, so a single process runs exactly the code it always ran.

How the stages divide the work (``pipeline`` decides which stage does what):
- generation: shard i is made by process i mod world (:meth:`World.shards`); per-shard seeds make
  the samples independent of who made them;
- embedding and the neighbour search: each process takes a contiguous block of rows aligned to the
  batch (:meth:`World.rows`), so every batch is the one a single process would have computed, and
  the blocks are gathered in rank order (:func:`all_gather_rows`);
- classifier training: :class:`DataParallel`: every process draws the same global batch and
  trains on its own rows; DDP averages the gradients;
- everything else (K-means, maps, reports, ``done`` markers) is written by one process.

The process group is torch's own (process-wide) state; this module keeps none of its own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from side_core.errors import SideError

log = logging.getLogger(__name__)

# A process waits at a collective while another one finishes a single-writer stage (K-means, a map
# of 50,000 points): minutes, not the 10 minutes nccl allows by default.
TIMEOUT = timedelta(hours=6)
ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


@dataclass(frozen=True)
class World:
    """This process's place among ``size`` processes (``size == 1``: no launcher)."""

    rank: int = 0  # 0 .. size - 1, over all nodes
    size: int = 1
    local_rank: int = 0  # index on this node: the GPU this process uses
    local_size: int = 1
    device: torch.device = torch.device("cpu")  # where this process computes

    @property
    def is_main(self) -> bool:
        """The process that writes reports and ``done`` markers."""
        return self.rank == 0

    @property
    def tag(self) -> str:
        """A log prefix such as ``[1/4] `` ('' for a single process)."""
        return f"[{self.rank}/{self.size}] " if self.size > 1 else ""

    def agree(self, flag: bool) -> bool:
        """The main process's ``flag``, on every process (e.g. "is this stage already done?", asked
        once so that all processes take the same branch into a collective)."""
        if self.size == 1:
            return flag
        box = [flag]
        dist.broadcast_object_list(box, src=0)
        return bool(box[0])

    def barrier(self) -> None:
        """Wait until every process gets here (no-op for a single process)."""
        if self.size == 1:
            return
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.local_rank])
        else:
            dist.barrier()

    def shards(self, n_shards: int) -> range:
        """Shard indices this process makes: i with i mod size == rank."""
        return range(self.rank, n_shards, self.size)

    def rows(self, n: int, align: int = 1) -> range:
        """This process's contiguous block of ``range(n)``, cut at multiples of ``align``.

        Whole batches of ``align`` rows are dealt out as evenly as they go, earlier ranks first, so
        that the blocks in rank order are ``range(n)`` again.
        """
        if align < 1:
            raise SideError(f"Rows must be split in blocks of at least 1 (got {align}).")
        n_blocks = -(-n // align)
        per, extra = divmod(n_blocks, self.size)
        first = self.rank * per + min(self.rank, extra)
        last = first + per + (1 if self.rank < extra else 0)
        return range(min(n, first * align), min(n, last * align))


def world_from_env(env: Mapping[str, str] | None = None) -> tuple[int, int, int, int]:
    """(rank, size, local_rank, local_size) from a launcher's environment; (0, 1, 0, 1) without one."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        if "RANK" in env or "LOCAL_RANK" in env:
            raise SideError(
                "RANK or LOCAL_RANK is set but WORLD_SIZE is not: start the command with `accelerate launch` or "
                "`torchrun`, which set all of them, or unset RANK and LOCAL_RANK to run one process."
            )
        return 0, 1, 0, 1
    values = {}
    for key in ENV_KEYS:
        raw = env.get(key, "0" if key in ("RANK", "LOCAL_RANK") else env.get("WORLD_SIZE"))
        try:
            values[key] = int(raw)
        except ValueError:
            raise SideError(
                f"{key}={raw!r} is not an integer: launch with `accelerate launch` or `torchrun`."
            ) from None
    rank, size, local_rank, local_size = (values[k] for k in ENV_KEYS)
    if size < 1:
        raise SideError(f"WORLD_SIZE={size}: a run needs at least 1 process.")
    if not 0 <= rank < size:
        raise SideError(f"RANK={rank} is outside 0..{size - 1} (WORLD_SIZE={size}): each process needs its own rank.")
    if not 1 <= local_size <= size or not 0 <= local_rank < local_size:
        raise SideError(
            f"LOCAL_RANK={local_rank} with LOCAL_WORLD_SIZE={local_size} and WORLD_SIZE={size} is not a valid "
            "layout: a node runs 1..WORLD_SIZE processes, numbered 0..LOCAL_WORLD_SIZE-1."
        )
    if size > 1 and not env.get("MASTER_ADDR"):
        raise SideError(
            "WORLD_SIZE > 1 but MASTER_ADDR is not set: the processes cannot find each other. Launch with "
            "`accelerate launch` or `torchrun` (for several nodes pass --main_process_ip / --master_addr)."
        )
    return rank, size, local_rank, local_size


def start(device: str | torch.device | None = None) -> World:
    """Join the launched processes (if any) and pick this process's device.

    ``device``: None (a GPU when present), ``cpu`` (gloo) or ``cuda`` (nccl; each process takes
    the GPU of its local rank). Call once per process, before loading models; :func:`stop` ends it.
    """
    rank, size, local_rank, local_size = world_from_env()
    from side_core.models import resolve_device

    if device is not None:
        device = resolve_device(device)  # a bad or absent device is named here, in one line
    wants_cpu = device is not None and device.type == "cpu"
    use_cuda = not wants_cpu and torch.cuda.is_available()
    if size == 1:
        chosen = torch.device(device) if device is not None else torch.device("cuda" if use_cuda else "cpu")
        return World(device=chosen)
    if use_cuda:
        if device is not None and torch.device(device).index is not None:
            raise SideError(
                f"--device {device} would put all {size} processes on one GPU: pass --device cuda, and each "
                "process takes the GPU of its local rank."
            )
        if local_rank >= torch.cuda.device_count():
            raise SideError(
                f"Process {local_rank} on this node needs GPU {local_rank}, but the node has "
                f"{torch.cuda.device_count()}: launch at most that many processes per node, or pass --device cpu."
            )
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        from accelerate import PartialState

        PartialState(cpu=not use_cuda, timeout=TIMEOUT)
    chosen = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    world = World(rank, size, local_rank, local_size, chosen)
    log.debug("%sjoined %d processes (%s) on %s", world.tag, size, dist.get_backend(), chosen)
    return world


def stop() -> None:
    """Leave the process group (no-op for a single process). No barrier: a process that has
    nothing left to do may leave while others still work."""
    if dist.is_initialized():
        dist.destroy_process_group()


def current() -> World:
    """The world this process joined with :func:`start` (a single process if it joined none)."""
    if not dist.is_initialized():
        return World()
    rank, size, local_rank, local_size = world_from_env()
    nccl = dist.get_backend() == "nccl"
    return World(
        dist.get_rank(),
        dist.get_world_size(),
        local_rank,
        local_size,
        torch.device("cuda", local_rank) if nccl else torch.device("cpu"),
    )


def is_main() -> bool:
    return current().is_main


def all_gather_rows(block: torch.Tensor) -> torch.Tensor:
    """Every process's (n_r, ...) block, concatenated in rank order; blocks may differ in length,
    and an empty block may have any shape (it takes the others').

    Returned on the block's device, on every process. A single process gets its block back."""
    world = current()
    if world.size == 1:
        return block
    shapes: list[tuple[int, ...]] = [()] * world.size
    dist.all_gather_object(shapes, tuple(block.shape) if len(block) else None)
    trailing = next((s[1:] for s in shapes if s is not None), block.shape[1:])
    lengths = [s[0] if s is not None else 0 for s in shapes]
    padded = torch.zeros((max(lengths), *trailing), dtype=block.dtype, device=world.device)
    if len(block):
        padded[: len(block)] = block.to(world.device)
    gathered = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:n] for g, n in zip(gathered, lengths, strict=True)]).to(block.device)


def all_reduce_min(values: torch.Tensor) -> torch.Tensor:
    """Elementwise minimum over processes (a copy, on the input's device)."""
    world = current()
    if world.size == 1:
        return values
    comm = values.to(world.device).clone()
    dist.all_reduce(comm, op=dist.ReduceOp.MIN)
    return comm.to(values.device)


class DataParallel:
    """Data-parallel training of a classifier whose loop draws one global batch per step.

    Every process draws the same global batch (the same seeded generator), keeps its own rows and
    computes the summed cross-entropy on them; DDP averages the gradients over processes, and the
    loss is scaled so that the average is the gradient of the global batch's mean loss. So the
    optimizer sees the same batches at every world size; only the order of floating-point sums
    differs (measured in benchmarks/README.md, Scale-out). With one process the loss is exactly the
    single-process one.
    """

    def __init__(self, model: nn.Module, world: World | None = None):
        self.world = world or current()
        self.module = model
        if self.world.size > 1:
            device_ids = [self.world.local_rank] if self.world.device.type == "cuda" else None
            self.net: nn.Module = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        else:
            self.net = model

    def cross_entropy(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss to backpropagate for a global batch (x (B, C, H, W), t (B,), labels y (B,))."""
        if self.world.size == 1:
            return F.cross_entropy(self.net(x, t), y)
        if len(x) < self.world.size:
            raise SideError(
                f"A classifier batch of {len(x)} cannot be split over {self.world.size} processes: raise the "
                "batch size to at least the number of processes, or launch fewer processes."
            )
        rows = self.world.rows(len(x))
        rows = slice(rows.start, rows.stop)
        local_sum = F.cross_entropy(self.net(x[rows], t[rows]), y[rows], reduction="sum")
        return local_sum * (self.world.size / len(x))

    def global_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The global batch's mean loss (detached, 0-dim), the same on every process; with one
        process, ``loss`` itself."""
        if self.world.size == 1:
            return loss
        total = loss.detach().reshape(1).to(self.world.device)
        dist.all_reduce(total)
        return (total / self.world.size).reshape(())
