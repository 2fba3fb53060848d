"""Data-parallel training under ``torchrun`` (DistributedDataParallel), and the one-process case.

``emotk train`` started by ``torchrun --nproc_per_node N`` (WORLD_SIZE, RANK, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT in the environment) joins a process group: gloo on CPU, nccl on
CUDA with rank r on ``cuda:LOCAL_RANK``. Without those variables, or with WORLD_SIZE=1, every
method of :class:`Context` is the identity and the trainer runs in one process as before.

Data: every rank builds the same epoch batches (a function of seed and epoch) and takes its part
of each global batch: B examples split in N contiguous parts whose sizes differ by one at most.
A part's loss (a mean over its n_r examples) is scaled by n_r N / B and DDP averages the
gradients over the ranks, so a step's gradient is that of the mean loss over the B examples,
as in one process. A rank whose part is empty (B < N) runs the batch's first example with weight
0: every rank must take part in each gradient all-reduce. The epoch's train loss is summed over
the ranks, so train.log reads as in one process.

Exact up to float32 summation order: losses that are means over examples (cross-entropy without
class weights or with equal ones, utterance-level MSE). Not exact: class-weighted cross-entropy
with unequal weights (each part is normalized by its own weight sum), CCC (batch moments per
part), frame-level losses (means over each part's frames), BatchNorm (statistics per part; the
running statistics are rank 0's, broadcast by DDP at each forward and by the trainer after each
epoch) and dropout (each rank draws its own masks).

Validation runs once, on rank 0 with the unwrapped model, and its result is broadcast: early
stopping, the plateau scheduler and the best checkpoint decide the same on every rank. Rank 0
alone logs and writes the exp dir. Checkpoints hold every rank's RNG state, so a run resumed
with the same N continues exactly as an uninterrupted one.

Tests compare the ranks' final weights with ``EMOTK_TEST_DUMP_STATE=DIR``: at the end of
training each rank saves its model's state dict to ``DIR/rank<r>.pt``.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from emotk.errors import EmotkError
from emotk.training.predict import resolve_device
from emotk.training.seeding import get_rng_state

TEST_DUMP_ENV = "EMOTK_TEST_DUMP_STATE"
T = TypeVar("T")


class Share(NamedTuple):
    """One rank's part of a global batch: the examples it runs, how many of them count, and the
    factor on its loss that makes the averaged gradient the global batch's."""

    examples: list
    count: int
    scale: float


def split_batch(batch: list, rank: int, world_size: int) -> Share:
    """Rank ``rank``'s contiguous part of ``batch`` (sizes differ by one at most)."""
    k, r = divmod(len(batch), world_size)
    lo = rank * k + min(rank, r)
    part = batch[lo: lo + k + (rank < r)]
    if not part:  # nothing left for this rank: a weightless stand-in keeps it in step
        return Share(batch[:1], 0, 0.0)
    return Share(part, len(part), len(part) * world_size / len(batch))


def _silent(msg: str) -> None:
    pass


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise EmotkError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {name}={value!r}: start distributed "
                         "training with torchrun") from None


def _shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@dataclass(frozen=True)
class Context:
    """This process's place in the run: ``world_size`` processes, this one ``rank``, on ``device``."""

    world_size: int
    rank: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def main_only(self, log: Callable[[str], None]) -> Callable[[str], None]:
        return log if self.is_main else _silent

    def wrap(self, model: torch.nn.Module, find_unused: bool = False) -> torch.nn.Module:
        """The model in DDP (rank 0's weights broadcast now); inputs stay where the caller put
        them (``device_ids=None``): sequence lengths must remain on the CPU."""
        if not self.distributed:
            return model
        return torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=find_unused)

    def shares(self, batches: list[list]) -> list[Share]:
        return [split_batch(b, self.rank, self.world_size) for b in batches]

    def on_main(self, fn: Callable[[], T]) -> T:
        """``fn()`` on rank 0, its result on every rank. An EmotkError there is raised on rank 0;
        the other ranks exit quietly with status 1 (the error is said once)."""
        if not self.distributed:
            return fn()
        box: list = [None]
        if self.is_main:
            try:
                box[0] = ("ok", fn())
            except EmotkError as e:
                box[0] = ("error", str(e))
        dist.broadcast_object_list(box, src=0)
        status, value = box[0]
        if status == "error":
            if self.is_main:
                raise EmotkError(value)
            raise SystemExit(1)
        return value

    def sync_buffers(self, model: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank, which updated its own from its part."""
        if self.distributed:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)

    def sum(self, x: float) -> float:
        if not self.distributed:
            return x
        t = torch.tensor([x], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item())

    def rng_states(self) -> list[dict]:
        """Every rank's RNG state (a collective: all ranks call it)."""
        if not self.distributed:
            return [get_rng_state()]
        out: list = [None] * self.world_size
        dist.all_gather_object(out, get_rng_state())
        return out

    def own_rng_state(self, checkpoint: dict, log: Callable[[str], None]) -> dict:
        """This rank's RNG state in a checkpoint; rank 0's when it was written by another number of processes."""
        states = checkpoint.get("rank_rng") or [checkpoint["rng"]]
        if len(states) == self.world_size:
            return states[self.rank]
        log(f"resuming with {self.world_size} process(es) from a checkpoint of {len(states)}: random draws "
            "(dropout) continue differently from an uninterrupted run")
        return states[0]

    def seed_rank(self, seed: int) -> None:
        """Own torch draws (dropout masks) for ranks > 0; rank 0 keeps the one-process stream."""
        if self.rank > 0:
            torch.manual_seed(int(np.random.SeedSequence([seed % 2**32, self.rank]).generate_state(1)[0]))

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def context(device_name: str) -> Context:
    """The run's context: joins the process group on first use under torchrun (idempotent)."""
    device = resolve_device(device_name)
    world = int(os.environ.get("WORLD_SIZE") or 1)
    if world <= 1:
        return Context(1, 0, 0, device)
    rank, local = _env_int("RANK"), _env_int("LOCAL_RANK")
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise EmotkError(f"rank {rank}: LOCAL_RANK={local} but {torch.cuda.device_count()} CUDA device(s) are "
                             "visible: start at most one process per GPU (torchrun --nproc_per_node)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if not os.environ.get(name):
                raise EmotkError(f"WORLD_SIZE={world} but {name} is not set: start distributed training with torchrun")
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
        atexit.register(_shutdown)
    elif dist.get_world_size() != world:
        raise EmotkError(f"WORLD_SIZE={world} but the process group holds {dist.get_world_size()} processes")
    return Context(world, rank, local, device)


def dump_state_for_test(ctx: Context, model: torch.nn.Module) -> None:
    """Test hook (``EMOTK_TEST_DUMP_STATE``): this rank's final weights, to compare the ranks."""
    target = os.environ.get(TEST_DUMP_ENV)
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), Path(target) / f"rank{ctx.rank}.pt")
