"""Batches by tokens, as NMT toolkits make them (fairseq, Marian, JoeyNMT): pairs of similar length together, as many
as fit in a budget of padded tokens, so that a batch of long sentences costs about what a batch of short ones costs.

The batches are formed once, from the lengths and the seed (so every epoch has the same number of them), and only
their order is shuffled per epoch, from (seed, epoch) alone: a run resumed inside an epoch sees the very order the
uninterrupted run saw. With several processes, accelerate deals the batches out round-robin; their number is made
a multiple of the process count by splitting the largest batches, so every process gets as many batches and no pair
is trained on twice in an epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch


def token_batches(
    source_lengths: Sequence[int], target_lengths: Sequence[int], max_tokens: int, seed: int, num_processes: int = 1
) -> list[np.ndarray]:
    """Indices of pairs, in batches whose padded size (pairs × longest sentence) is at most `max_tokens` on the source
    side and on the target side. Pairs are sorted by their longer side (ties broken by a seeded draw) and cut
    greedily; then the largest batches are halved until the count is a multiple of `num_processes`."""
    sources, targets = np.asarray(source_lengths, dtype=np.int64), np.asarray(target_lengths, dtype=np.int64)
    longest = np.maximum(sources, targets)
    too_long = np.flatnonzero(longest > max_tokens)
    if too_long.size:
        raise ValueError(
            f"{too_long.size} pair(s) have more tokens than --max_tokens_per_batch {max_tokens} allows in a batch "
            f"(pair {too_long[0]}: {longest[too_long[0]]} tokens); raise it or lower --max_source_length / "
            "--max_target_length"
        )
    tie_break = np.random.default_rng(seed).random(len(longest))
    order = np.lexsort((tie_break, longest))
    batches, start, widest_source, widest_target = [], 0, 0, 0
    for position, pair in enumerate(order):
        widest_source, widest_target = max(widest_source, sources[pair]), max(widest_target, targets[pair])
        if (position - start + 1) * max(widest_source, widest_target) > max_tokens:
            batches.append(order[start:position])
            start, widest_source, widest_target = position, sources[pair], targets[pair]
    if start < len(order):
        batches.append(order[start:])
    while len(batches) % num_processes:
        largest = max(range(len(batches)), key=lambda i: (len(batches[i]), -i))
        if len(batches[largest]) < 2:
            raise ValueError(f"{len(order)} pairs cannot make a batch for each of {num_processes} processes")
        half = len(batches[largest]) // 2
        batches[largest : largest + 1] = [batches[largest][:half], batches[largest][half:]]
    return batches


class TokenBatchSampler(torch.utils.data.Sampler):
    """The `token_batches` of a dataset, in an order drawn per epoch from (seed, epoch). `epoch()` is read when an
    epoch's iteration starts (the Trainer's state: e.0 at the start of epoch e, e plus a fraction when resuming)."""

    def __init__(self, source_lengths, target_lengths, max_tokens: int, seed: int, epoch: Callable[[], float],
                 num_processes: int = 1):  # fmt: skip
        self.batches = token_batches(source_lengths, target_lengths, max_tokens, seed, num_processes)
        self.seed = seed
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        order = np.random.default_rng([self.seed, math.floor(self.epoch())]).permutation(len(self.batches))
        for index in order:
            yield self.batches[index].tolist()
