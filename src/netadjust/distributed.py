"""Several processes, one search: PyTorch's own distributed engine (``torchrun``,
``torch.distributed``, DistributedDataParallel), nccl on CUDA and gloo on the CPU.

A ``Processes`` value travels wherever work is split: training (each process takes its
share of every global batch), evaluation and FUR (each process takes a contiguous share
of the samples and the sums are all-reduced). The single-process value ``SINGLE`` makes
all of it a no-op, so one code path serves one process and many.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .errors import UserError


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This process's contiguous share of ``n`` items (sizes differ by at most one)."""
        return slice(n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over all processes (in place), on the tensor's own device."""
        if self.world_size > 1:
            dist.all_reduce(tensor)
        return tensor

    def broadcast(self, value):
        """Rank 0's ``value`` (any picklable object), on every process."""
        if self.world_size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def agree(self, compute):
        """Run ``compute`` on rank 0 and hand its result, or its ``UserError``, to all
        ranks: checks only rank 0 can make (the run directory) fail everywhere at once."""
        outcome = None
        if self.is_main:
            try:
                outcome = ("ok", compute())
            except UserError as error:
                outcome = ("error", str(error))
        outcome = self.broadcast(outcome)
        if outcome[0] == "error":
            raise SharedError(outcome[1], self.rank)
        return outcome[1]


SINGLE = Processes()


class SharedError(UserError):
    """Rank 0's ``UserError``, raised on every rank; only rank 0 needs to print it."""

    def __init__(self, message: str, rank: int):
        super().__init__(message)
        self.rank = rank


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(timeout_s: float) -> Processes:
    """Join the process group torchrun set up (nothing to do for one process). The backend
    follows the tensors: gloo for CPU ones, nccl for CUDA ones."""
    if not launched_by_torchrun():
        return SINGLE
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return Processes(dist.get_rank(), dist.get_world_size())


def local_device(device: str, processes: Processes) -> str:
    """This process's device: with several processes on CUDA, the GPU of its local rank."""
    if processes.world_size == 1 or not device.startswith("cuda"):
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.device_count() <= local_rank:
        raise UserError(
            f"process {local_rank} of this machine has no GPU (found {torch.cuda.device_count()}); "
            "start at most one process per GPU"
        )
    torch.cuda.set_device(local_rank)
    return f"cuda:{local_rank}"


def stop(clean: bool) -> None:
    """Leave the process group. After a clean finish, first wait for every process: one that
    tears its connections down while a peer is still using them can abort the peer."""
    if dist.is_initialized():
        if clean:
            dist.barrier()
        dist.destroy_process_group()


def seed_of(*key: int) -> int:
    """A seed that depends on ``key`` alone (e.g. seed, epoch, stream, rank): no state to
    save for resume, and independent streams for every process."""
    return int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0] >> 1)


def generator(device: torch.device, *key: int) -> torch.Generator:
    """A generator on ``device`` seeded by ``seed_of(*key)``."""
    return torch.Generator(device=device).manual_seed(seed_of(*key))


@contextlib.contextmanager
def default_generator(device: torch.device) -> Iterator[torch.Generator]:
    """The generator that random operations on ``device`` draw from when given none (the
    only kind ``torch.compile`` traces), for the caller to seed; its state is put back on exit."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        default = torch.cuda.default_generators[index]
    else:
        default = torch.default_generator
    state = default.get_state()
    try:
        yield default
    finally:
        default.set_state(state)


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes of ``group``; its gradient is the sum of their gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        total = tensor.clone()
        dist.all_reduce(total, group=group)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        total = grad.clone()
        dist.all_reduce(total, group=ctx.group)
        return total, None


class GlooSyncBatchNorm(nn.BatchNorm2d):
    """Batch norm whose training statistics cover the global batch on the CPU.

    ``torch.nn.SyncBatchNorm`` runs on GPUs only; here the per-channel sums are all-reduced
    by an autograd function whose backward pass all-reduces the gradients, so the result
    and its gradient equal batch norm over the union of the processes' batches. Evaluation
    uses the running statistics, like ``nn.BatchNorm2d``. ``group`` is a process group of
    its own: DDP all-reduces gradient buckets during the same backward pass, and two
    streams of collectives on one group could pair up differently on different processes.
    """

    group = None  # set by sync_batch_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        dims = [0, 2, 3]
        channels = x.shape[1]
        values = x.to(torch.promote_types(x.dtype, torch.float32))  # bf16 under autocast: float32
        # two passes, as batch norm itself: the global mean, then the spread around it
        local = torch.cat([values.sum(dims), values.new_tensor([values.numel() / channels])])
        total = _AllReduceSum.apply(local, self.group)
        count = total[-1]
        mean = total[:channels] / count
        var = _AllReduceSum.apply(((values - mean.view(1, -1, 1, 1)) ** 2).sum(dims), self.group) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1 / float(self.num_batches_tracked)
                unbiased = var * count / max(count.item() - 1, 1)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        shape = (1, channels, 1, 1)
        y = (values - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def sync_batch_norm(model: nn.Module, device: torch.device) -> nn.Module:
    """Batch norms replaced in place by synchronised ones (module names unchanged, so
    drop sites still resolve): PyTorch's on GPUs, ``GlooSyncBatchNorm`` on the CPU."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    group = dist.new_group(backend="gloo")
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is nn.BatchNorm2d:
                replacement = GlooSyncBatchNorm(
                    child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
                )
                like = next(child.parameters(), child.running_mean)
                replacement.to(device=device, dtype=like.dtype)
                replacement.load_state_dict(child.state_dict())
                replacement.group = group
                setattr(module, child_name, replacement)
    return model


def launch(nproc: int, argv: list[str]) -> int:
    """``netadjust search --nproc N``: run ``netadjust argv`` as N processes on this machine
    under PyTorch's elastic launcher (the one torchrun drives); return their exit status.
    The processes print their own errors, so a failure adds nothing but its status."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.5,
    )
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    # the agent's own reports of a stopped or failed process repeat what the processes print
    quiet = [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if name.startswith("torch.distributed.elastic")
    ]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    try:
        elastic_launch(config, sys.executable)("-m", "netadjust", *argv)
    except ChildFailedError as error:
        codes = {rank: failure.exitcode for rank, failure in error.failures.items()}
        killed = sorted((rank, -code) for rank, code in codes.items() if code < 0)
        if killed and 1 not in codes.values():  # no survivor said what happened: say it here
            rank, signum = killed[0]
            print(
                f"netadjust: error: process {rank} was killed by signal {signum} and the others were "
                f"stopped; continue with the same command and --resume RUN_DIR --nproc {nproc}",
                file=sys.stderr,
            )
            return 1
        return next((code for code in codes.values() if code > 0), 1)
    except SignalException as stop:  # SIGTERM/SIGINT: the agent has stopped the processes
        return 128 + int(stop.sigval)
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    return 0


def without_flag(argv: list[str], flag: str) -> list[str]:
    """``argv`` less ``flag VALUE`` / ``flag=VALUE``."""
    result, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == flag:
            skip = True
        elif not token.startswith(flag + "="):
            result.append(token)
    return result
