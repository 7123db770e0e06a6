"""The Trainer of train.py: length-grouped batches that survive a resume, evaluation in dataset order, checked
checkpoints, and BLEU/chrF as the metric."""

from __future__ import annotations

import math
import time

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import Seq2SeqTrainer

from .checkpoints import check_checkpoint_weights
from .preprocessing import pair_lengths
from .token_batches import TokenBatchSampler
from .translation import decode


def padded_lengths(source_lengths, target_lengths) -> np.ndarray:
    """The length each pair is padded to in a batch: its longer side, in tokens.

    Grouping by source length alone leaves the targets of a batch unsorted (Multi30k de→en, batches of 128: 68% of
    the padded target positions are real tokens); grouping by the longer side keeps both sides about 90% real.
    """
    return np.maximum(np.asarray(source_lengths), np.asarray(target_lengths))


def length_grouped_order(lengths: np.ndarray, batch_size: int, generator: torch.Generator) -> np.ndarray:
    """transformers' `get_length_grouped_indices` (the order of its `LengthGroupedSampler`), the same indices from the
    same generator, in numpy arrays instead of Python lists: memory stays a few bytes a pair at millions of pairs.

    A random permutation cut into mega-batches of 50 batches (fewer when the data make fewer than 4), each sorted
    by length, longest first (ties in permutation order); the mega-batch holding the longest pair goes first.
    """
    mega_batch_mult = min(len(lengths) // (batch_size * 4), 50) or 1
    # 32-bit: the same permutation as randperm's default 64-bit (the values do not depend on the type), in half the
    # memory at millions of pairs.
    order = torch.randperm(len(lengths), generator=generator, dtype=torch.int32).numpy()
    size = mega_batch_mult * batch_size
    for start in range(0, len(order), size):  # each mega-batch sorted in place
        megabatch = order[start : start + size]
        megabatch[:] = megabatch[np.argsort(-lengths[megabatch], kind="stable")]
    starts = range(0, len(order), size)
    longest = starts[int(np.argmax(lengths[order[::size]]))]  # the mega-batch whose first pair is longest (the first)
    order[0], order[longest] = order[longest], order[0]
    return order


class EpochSeededLengthGroupedSampler(torch.utils.data.Sampler):
    """transformers' length-grouped order (`length_grouped_order` of `padded_lengths`), drawn from (seed, epoch)
    alone instead of the global torch RNG.

    The stock sampler shuffles with the global generator, whose state when an epoch starts depends on all that
    was drawn before (dropout included). A run resumed in epoch e > 0 starts that epoch right after `set_seed`,
    so it saw another order than the run it continues (some pairs twice, some never) and did not reproduce it.
    `epoch()` is read when the epoch's iteration starts (the Trainer's state: e.0 at the start of epoch e, e plus
    a fraction when resuming inside it), so every epoch has the same order however the run got there.
    """

    def __init__(self, batch_size: int, lengths, seed: int, epoch):
        self.batch_size = batch_size
        self.lengths = np.asarray(lengths)
        self.seed = seed
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + math.floor(self.epoch()))
        yield from map(int, length_grouped_order(self.lengths, self.batch_size, generator))


class TranslationTrainer(Seq2SeqTrainer):
    """`Seq2SeqTrainer` whose evaluation keeps the dataset order and whose length-grouped training order survives a
    resume (`EpochSeededLengthGroupedSampler`).

    With `train_sampling_strategy="group_by_length"`, transformers also length-groups (and
    shuffles) evaluation batches, so predictions would not line up with the references and the
    hypotheses file with the test set. Training batches are still grouped by length.
    """

    target_tokens_seen = 0  # non-padding target tokens trained on by this process in this run
    first_step_at = None  # time.time() when this run's first training step began

    def training_step(self, model, inputs, *args, **kwargs):
        if self.first_step_at is None:
            self.first_step_at = time.time()
        self.target_tokens_seen += int((inputs["labels"] != -100).sum())
        return super().training_step(model, inputs, *args, **kwargs)

    def get_train_dataloader(self) -> DataLoader:
        if self.args.max_tokens_per_batch is None:
            return super().get_train_dataloader()
        if not isinstance(self.train_dataset, datasets.Dataset):
            raise ValueError("--max_tokens_per_batch needs every pair's length before training: not with --streaming")
        batches = TokenBatchSampler(
            *pair_lengths(self.train_dataset),
            max_tokens=self.args.max_tokens_per_batch,
            seed=self._data_seed(),
            epoch=self._epoch,
            num_processes=self.args.world_size,  # accelerate deals the batches out round-robin
        )
        loader = DataLoader(
            self._remove_unused_columns(self.train_dataset, description="Training"),
            batch_sampler=batches,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )
        return self.accelerator.prepare(loader)

    def _get_train_sampler(self, train_dataset=None):
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or not isinstance(dataset, datasets.Dataset):
            return super()._get_train_sampler(train_dataset)
        return EpochSeededLengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps,
            padded_lengths(*pair_lengths(self.train_dataset)),  # the same rows, before unused columns were dropped
            self._data_seed(),
            epoch=self._epoch,
        )

    def _data_seed(self) -> int:
        """The seed of the training order: --data_seed, else --seed."""
        return self.args.data_seed if self.args.data_seed is not None else self.args.seed

    def _epoch(self) -> float:
        """Where training is, in epochs (the samplers read it when an epoch's iteration starts)."""
        return self.state.epoch or 0

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        check_checkpoint_weights(resume_from_checkpoint, self.model if model is None else model)
        super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_best_model(self):
        check_checkpoint_weights(self.state.best_model_checkpoint, self.model)
        super()._load_best_model()

    def _get_eval_sampler(self, eval_dataset):
        if eval_dataset is None or self.args.world_size > 1:
            return None  # distributed: accelerate shards in order and gathers back in order
        return torch.utils.data.SequentialSampler(eval_dataset)

    def evaluation_loop(self, *args, **kwargs):
        # Seq2SeqTrainer.evaluate/predict gather with `accelerator.gather`, which keeps the samples accelerate repeats
        # to give every process a full last batch: with several processes there would be more predictions than
        # examples. `gather_for_metrics` drops those repeats.
        self.gather_function = self.accelerator.gather_for_metrics
        return super().evaluation_loop(*args, **kwargs)


def make_compute_metrics(tokenizer, metric, references: list[str]):
    """BLEU/chrF of generated ids against the original (untokenised, untruncated) references."""

    def compute_metrics(eval_preds) -> dict[str, float]:
        predictions = eval_preds.predictions[0] if isinstance(eval_preds.predictions, tuple) else eval_preds.predictions
        hypotheses = decode(tokenizer, predictions, generated=True)
        if len(hypotheses) != len(references):
            raise RuntimeError(f"{len(hypotheses)} predictions for {len(references)} references")
        scores = metric.compute(predictions=hypotheses, references=references)
        return {"bleu": scores["bleu"], "chrf": scores["chrf"], "length_ratio": scores["length_ratio"]}

    return compute_metrics
