"""Epoch-shuffled minibatches, as in ``gepa``.

Each epoch is a fresh shuffle of the training ids, cut into consecutive
minibatches, so every example is seen once per epoch and the order differs
between epochs. A last partial batch is completed from the next epoch's
shuffle rather than dropped or padded with repeats of one example.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = ["EpochShuffledSampler"]


class EpochShuffledSampler:
    def __init__(self, ids: Sequence[str], batch_size: int, rng: random.Random) -> None:
        if not ids:
            raise ValueError("cannot sample minibatches from an empty training set")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
        self._ids = list(ids)
        self.batch_size = min(batch_size, len(self._ids))
        self._rng = rng
        self._order: list[str] = []
        self.epoch = 0

    def next_batch(self) -> list[str]:
        batch: list[str] = []
        while len(batch) < self.batch_size:
            if not self._order:
                self._order = self._ids[:]
                self._rng.shuffle(self._order)
                self.epoch += 1
            candidate = self._order.pop()
            if candidate not in batch:
                batch.append(candidate)
            else:
                self._order.insert(0, candidate)
        return batch
