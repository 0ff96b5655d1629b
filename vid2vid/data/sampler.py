"""Training data order and the loader around it, with no state in the DataLoader workers.

Workers hold their own copy of the dataset (persistent workers for the whole run), so anything set on the
dataset in the main process (the epoch, the clip length) never reaches them. Instead the sampler, which runs in
the main process, yields ClipKey(epoch, index, n_frames) and ClipDataset draws the clip from the key alone:

* EpochSampler: a permutation of range(n) drawn from (seed, epoch); `skip(k)` resumes inside an epoch.
* ClipSampler: that order as ClipKeys. The clip length is decided per batch (a batch never mixes lengths).
* BatchStream (`endless_batches`): batches forever from a data position (epoch, batches consumed), epoch after
  epoch; `set_n_frames(n)` takes effect exactly from the next batch it returns (see BatchStream.set_n_frames).
* make_loader: the DataLoader; a DataError met in a worker is carried to the main process as data and raised
  there as the same DataError (torch would re-raise it with the worker's traceback folded into the message).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate, get_worker_info

from vid2vid.errors import DataError


class ClipKey(NamedTuple):
    """Everything that decides a training clip besides the dataset's seed: ClipDataset[key]."""

    epoch: int
    index: int
    n_frames: int


class EpochSampler(Sampler[int]):
    """A permutation of range(n) drawn from (seed, epoch) alone, so every process and every resume
    sees the same order. `skip(k)` drops the first k indices of the next iteration (resume)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch, self._skip = n, seed, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip(self, k: int) -> None:
        self._skip = k

    def order(self) -> list[int]:
        """This epoch's permutation."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self):
        start, self._skip = self._skip, 0
        return iter(self.order()[start:])

    def __len__(self) -> int:
        return self.n


class ClipSampler(EpochSampler):
    """EpochSampler's order as ClipKey(epoch, index, n_frames).

    keys_per_batch: keys of one training batch over all processes (data.batch_size x processes; every process
    iterates the whole order and accelerate deals the batches out). The clip length is read at each multiple of
    it, so one step's batches share one length on every process, and `skip` must be a multiple of it too.
    set_n_frames(n) applies to keys drawn from the next batch boundary on; keys drawn already (a loader's
    prefetch) keep theirs: BatchStream.set_n_frames is the call that makes a change land on an exact batch."""

    def __init__(self, n: int, seed: int, *, n_frames: int, max_n_frames: int, keys_per_batch: int = 1):
        super().__init__(n, seed)
        self.max_n_frames, self.keys_per_batch = max_n_frames, keys_per_batch
        self.n_frames = self._next_n_frames = self._capped(n_frames)  # n_frames: that of the keys drawn last

    def _capped(self, n: int) -> int:
        if n < 1:
            raise ValueError(f"set_n_frames: n must be >= 1, got {n}")
        return min(n, self.max_n_frames)

    def set_n_frames(self, n: int) -> int:
        """Clip length for keys from the next batch boundary on, capped at max_n_frames. Returns it."""
        self._next_n_frames = self._capped(n)
        return self._next_n_frames

    @property
    def pending(self) -> bool:
        """Whether keys drawn already have another length than the one set."""
        return self._next_n_frames != self.n_frames

    def skip(self, k: int) -> None:
        if k % self.keys_per_batch:
            raise ValueError(f"skip: {k} keys is not a whole number of batches of {self.keys_per_batch}")
        super().skip(k)

    def __iter__(self):
        start, self._skip = self._skip, 0  # read now, not at the first key: the caller may set the next skip
        return self._keys(self.epoch, self.order(), start)

    def _keys(self, epoch: int, order: list[int], start: int):
        for position in range(start, len(order)):
            if position % self.keys_per_batch == 0:
                self.n_frames = self._next_n_frames
            yield ClipKey(epoch, order[position], self.n_frames)


# ----------------------------------------------------------------------------------------------
# Errors across the worker boundary
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerFailure:
    """A DataError met in a worker, returned in place of the batch. BatchStream raises it; indexing it
    (batch["frames"]) raises it too, so no other consumer can take it for data."""

    message: str

    def error(self) -> DataError:
        return DataError(self.message)

    def __getitem__(self, key):
        raise self.error()


class CatchInWorkers(Dataset):
    """The dataset as the loader sees it: in a worker, a DataError becomes a WorkerFailure item (the
    main process raises it again, message unchanged); in the main process it propagates as usual."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        try:
            return self.dataset[key]
        except DataError as e:
            if get_worker_info() is None:
                raise
            return WorkerFailure(str(e))


def collate(items: list):
    """default_collate, except that a batch with a failed item is that item's WorkerFailure."""
    failure = next((item for item in items if isinstance(item, WorkerFailure)), None)
    return failure if failure is not None else default_collate(items)


def make_loader(dataset: Dataset, sampler: Sampler, batch_size: int, num_workers: int) -> DataLoader:
    """The training DataLoader: full batches only; workers persist across epochs (they hold no state:
    the keys carry it) and report DataErrors as WorkerFailures."""
    return DataLoader(CatchInWorkers(dataset), batch_size=batch_size, sampler=sampler, drop_last=True,
                      collate_fn=collate, num_workers=num_workers, persistent_workers=num_workers > 0,
                      pin_memory=torch.cuda.is_available())


# ----------------------------------------------------------------------------------------------
# The endless stream of batches
# ----------------------------------------------------------------------------------------------


class BatchStream:
    """next() -> (epoch, batches consumed in that epoch, batch), forever, from a data position.

    batch_in_epoch counts this process's loader batches; with keys_per_batch keys per batch over all
    processes, the position in samples is batch_in_epoch * keys_per_batch (what the trainer saves)."""

    def __init__(self, loader, sampler: ClipSampler, dataset, epoch: int, batch_in_epoch: int,
                 keys_per_batch: int):
        self.loader, self.sampler, self.dataset = loader, sampler, dataset
        self.epoch, self.batch_in_epoch, self.keys_per_batch = epoch, batch_in_epoch, keys_per_batch
        self._batches = None  # the live iteration over the loader, for self.epoch

    def __iter__(self):
        return self

    def __next__(self):
        batch = self._next_batch()
        if isinstance(batch, WorkerFailure):
            raise batch.error()
        self.batch_in_epoch += 1
        return self.epoch, self.batch_in_epoch, batch

    def _next_batch(self):
        while True:
            if self._batches is None:
                self._batches = self._start()
            batch = next(self._batches, None)
            if batch is not None:
                return batch
            self.epoch, self.batch_in_epoch, self._batches = self.epoch + 1, 0, None

    def _start(self):
        """Iterate the loader from the current position."""
        self.sampler.skip(self.batch_in_epoch * self.keys_per_batch)
        if hasattr(self.loader, "set_epoch"):  # accelerate's loader: its own epoch counter (and the sampler's)
            self.loader.set_epoch(self.epoch)
        self.sampler.set_epoch(self.epoch)
        self.dataset.set_epoch(self.epoch)  # for dataset[int] in this process only; workers read the keys
        return iter(self.loader)

    def set_n_frames(self, n: int) -> int:
        """Clip length from the next batch next() returns on (capped at the shortest sequence; returned).

        "Next" is exact whatever num_workers and prefetch_factor are: the loader has drawn keys ahead (the
        workers' prefetch, accelerate's one-batch look-ahead) with the old length, so when the length changes
        the live iteration is dropped and the loader restarted at the current position; the sampler then
        draws every further key with the new length. Call it between steps with the same n on every process
        (a function of the step), and again with the restored value after a resume."""
        n = self.sampler.set_n_frames(n)
        if self._batches is not None and self.sampler.pending:
            self._stop()
        return n

    def _stop(self) -> None:
        """Drop the live iteration (persistent workers drain their prefetch when the loader restarts)."""
        for finish in (getattr(self._batches, "close", None), getattr(self.loader, "end", None)):
            if finish is not None:  # accelerate's loader: end its generator and unregister the iteration
                finish()
        self._batches = None


def endless_batches(loader, sampler: ClipSampler, dataset, epoch: int, batch_in_epoch: int,
                    indices_per_batch: int) -> BatchStream:
    """Yield (epoch, batches consumed in that epoch, batch) forever, starting at a data position."""
    return BatchStream(loader, sampler, dataset, epoch, batch_in_epoch, indices_per_batch)
