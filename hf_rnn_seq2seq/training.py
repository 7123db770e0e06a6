"""Train, evaluate and publish a GRU translation model: the logic behind `train.py`.

Modelled on transformers' `examples/pytorch/translation/run_translation.py` (same argument
names where the concept is the same), with what a from-scratch RNN needs on top: a tokenizer
trained on the training split, model size / attention flags, sacreBLEU through a local
`evaluate` module, and an output folder that is a complete Hub model repository (weights,
code, tokenizer, generation config, model card with the measured scores).

Run with no arguments to train the default model on Multi30k German->English::

    python train.py
    python train.py --source_lang en --target_lang fr --num_train_epochs 5
    python train.py my_settings.yaml        # or .json: every argument in one file
    torchrun --nproc_per_node 2 train.py     # DDP (gloo on CPU, nccl on GPUs)
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
import transformers
from safetensors import SafetensorError, safe_open
from transformers import (
    AutoConfig,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    EarlyStoppingCallback,
    HfArgumentParser,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    set_seed,
)
from transformers.trainer_pt_utils import LengthGroupedSampler

from . import ATTENTION_TYPES, RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration
from .allocator import keep_freed_memory_for_reuse
from .data import MULTI30K_SPLIT_STEMS, DataError, load_hub_dataset, load_parallel_dir, load_parallel_files
from .metrics import load_metric
from .modeling_rnn_seq2seq import TESTED_TRANSFORMERS
from .tokenization import check_vocabulary, train_bpe_tokenizer
from .translation import decode

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
# The read-only data next to the repository on the development machines (../shared/data/multi30k).
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "multi30k"
# The same Multi30k splits on the Hub (columns "en", "de"), used when DEFAULT_DATA_DIR is absent.
DEFAULT_HUB_DATASET = "bentrevett/multi30k"
DEFAULT_MODEL_CARD_TEMPLATE = REPO_ROOT / "model_card.md"
HYPOTHESES_FILE = "generated_predictions.txt"
TEST_RESULTS_FILE = "test_results.json"


@dataclass
class ModelArguments:
    """Where the model and tokenizer come from, and the size of a model trained from scratch."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Fine-tune this checkpoint (folder or Hub id) instead of training from scratch."}
    )
    config_name: str | None = field(
        default=None, metadata={"help": "Start from this config (its vocab size is replaced by the tokenizer's)."}
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Reuse this tokenizer instead of training one on the training split."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub downloads are cached."})
    vocab_size: int = field(default=8000, metadata={"help": "Size of the joint BPE vocabulary trained here."})
    tokenizer_min_frequency: int = field(default=2, metadata={"help": "Minimum count of a BPE merge."})
    embedding_dim: int = field(default=256, metadata={"help": "Token embedding width."})
    hidden_size: int = field(default=512, metadata={"help": "Decoder GRU width."})
    encoder_hidden_size: int | None = field(
        default=256, metadata={"help": "Width of each encoder GRU direction (None: hidden_size)."}
    )
    num_encoder_layers: int = field(default=1, metadata={"help": "Stacked encoder GRU layers."})
    num_decoder_layers: int = field(default=1, metadata={"help": "Stacked decoder GRU layers."})
    bidirectional_encoder: bool = field(default=True, metadata={"help": "Read the source in both directions."})
    attention_type: str = field(
        default="luong_general", metadata={"help": "Attention of the decoder.", "choices": list(ATTENTION_TYPES)}
    )
    input_feeding: bool = field(default=False, metadata={"help": "Feed the attentional vector to the next step."})
    dropout: float = field(default=0.3, metadata={"help": "Dropout probability."})
    tie_word_embeddings: bool = field(default=True, metadata={"help": "Share embeddings and output layer."})
    license: str = field(default="apache-2.0", metadata={"help": "License tag written into the model card."})
    model_card_template: str = field(
        default=str(DEFAULT_MODEL_CARD_TEMPLATE), metadata={"help": "Jinja template of the README.md model card."}
    )


@dataclass
class DataTrainingArguments:
    """Which corpus, which direction, how long the sequences and how many examples."""

    source_lang: str = field(default="de", metadata={"help": "Source language code, e.g. de."})
    target_lang: str = field(default="en", metadata={"help": "Target language code, e.g. en."})
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Directory of {split}.{lang}[.gz] files (Multi30k layout). Default: ../shared/data/multi30k "
            f"next to the repository, else the Hub dataset {DEFAULT_HUB_DATASET}."
        },
    )
    train_split_stem: str = field(default=MULTI30K_SPLIT_STEMS["train"], metadata={"help": "File stem of train."})
    validation_split_stem: str = field(
        default=MULTI30K_SPLIT_STEMS["validation"], metadata={"help": "File stem of the validation split."}
    )
    test_split_stem: str = field(default=MULTI30K_SPLIT_STEMS["test"], metadata={"help": "File stem of test."})
    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset (needs network)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration of the Hub dataset."})
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "TSV or JSON-lines parallel file. Alone, it is split into train/validation/test by source sentence."
        },
    )
    validation_file: str | None = field(default=None, metadata={"help": "TSV or JSON-lines validation file."})
    test_file: str | None = field(default=None, metadata={"help": "TSV or JSON-lines test file."})
    file_languages: str | None = field(
        default=None, metadata={"help": "Languages of the TSV columns, comma-separated, e.g. en,fr for Tatoeba."}
    )
    validation_split_percentage: float = field(
        default=5.0, metadata={"help": "Percent of a lone train_file held out for validation."}
    )
    test_split_percentage: float = field(default=5.0, metadata={"help": "Percent of a lone train_file held out for test."})
    split_seed: int = field(default=42, metadata={"help": "Seed of the hash that splits a lone train_file."})
    max_source_length: int = field(default=128, metadata={"help": "Source tokens kept (EOS included)."})
    max_target_length: int = field(default=128, metadata={"help": "Target tokens kept for training (EOS included)."})
    val_max_target_length: int | None = field(
        default=None, metadata={"help": "Generation max_length for evaluation and the saved generation config."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training pairs."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N validation pairs."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Use only the first N test pairs."})
    num_beams: int = field(
        default=5, metadata={"help": "Beam size for the final evaluation, the test set and generation_config.json."}
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenisation."})
    early_stopping_patience: int = field(
        default=3, metadata={"help": "Stop after this many evaluations without a better BLEU (0: never)."}
    )
    num_examples_to_print: int = field(default=5, metadata={"help": "Test translations printed at the end."})

    def __post_init__(self):
        if self.val_max_target_length is None:
            self.val_max_target_length = self.max_target_length


@dataclass
class TranslationTrainingArguments(Seq2SeqTrainingArguments):
    """`Seq2SeqTrainingArguments` with defaults that train a useful GRU model with no flags at all."""

    output_dir: str | None = field(
        default=None, metadata={"help": "Output folder (default: runs/<corpus>-<source_lang>-<target_lang>)."}
    )
    num_train_epochs: float = field(default=10.0, metadata={"help": "Training epochs (early stopping may end sooner)."})
    learning_rate: float = field(default=2e-3, metadata={"help": "Peak AdamW learning rate."})
    per_device_train_batch_size: int = field(default=64, metadata={"help": "Training batch size per process."})
    per_device_eval_batch_size: int = field(default=128, metadata={"help": "Evaluation batch size per process."})
    warmup_steps: float = field(default=0.05, metadata={"help": "Warm-up steps, or a fraction (< 1) of all steps."})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "Decay after warm-up."})
    label_smoothing_factor: float = field(default=0.1, metadata={"help": "Label smoothing of the training loss."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    train_sampling_strategy: str = field(
        default="group_by_length",
        metadata={
            "help": "Batches of pairs of similar length (the longer side) waste less time on padding.",
            "choices": ["random", "sequential", "group_by_length", "batch_rebalance"],
        },
    )
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate (BLEU on validation)."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save a checkpoint."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept (the best is never deleted)."})
    logging_steps: float = field(default=50, metadata={"help": "Log the training loss every N steps."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "Keep the checkpoint with the best BLEU."})
    metric_for_best_model: str | None = field(default="bleu", metadata={"help": "Metric that picks the best model."})
    greater_is_better: bool | None = field(default=True, metadata={"help": "Higher metric_for_best_model is better."})
    predict_with_generate: bool = field(default=True, metadata={"help": "Evaluate generated translations (BLEU)."})
    generation_num_beams: int | None = field(
        default=1, metadata={"help": "Beam size of the per-epoch validation (greedy: fast; --num_beams is final)."}
    )
    disable_tqdm: bool | None = field(default=False, metadata={"help": "Hide the progress bars."})
    ddp_find_unused_parameters: bool | None = field(
        default=False, metadata={"help": "Only the chosen attention has parameters, so none are unused."}
    )
    push_to_hub: bool = field(
        default=False,
        metadata={
            "help": "Upload the output folder (weights, code, tokenizer, model card) to --hub_model_id once, at the "
            "end of training. Checkpoints stay local."
        },
    )

    def __post_init__(self):
        self.output_dir_given = self.output_dir is not None
        # The upload is ours, at the end: the Trainer's own pushes (at every save and in save_model) would publish
        # its generic model card and its pickled training state (training_args.bin, optimizer.pt).
        self.push_at_end, self.push_to_hub = self.push_to_hub, False
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available():
            # Launched as several processes on a machine without GPUs: without use_cpu the Trainer sees no
            # distributed setup and every process trains its own copy of the model on all the data.
            self.use_cpu = True
        if not (self.do_train or self.do_eval or self.do_predict):
            # No --do_* flag: the default job does all three. (Checked before the base class sets
            # do_eval from eval_strategy.)
            self.do_train = self.do_eval = self.do_predict = True
        if self.eval_strategy == "no" and self.load_best_model_at_end:
            logger.info("eval_strategy='no': no best model to load at the end")
            self.load_best_model_at_end = False
        if self.metric_for_best_model in ("bleu", "chrf") and not self.predict_with_generate:
            raise ValueError(f"metric_for_best_model={self.metric_for_best_model} needs --predict_with_generate")
        super().__post_init__()


def padded_lengths(dataset) -> list[int]:
    """The length each pair is padded to in a batch: its longer side, in tokens.

    Grouping by source length alone leaves the targets of a batch unsorted (Multi30k de→en, batches of 128: 68% of
    the padded target positions are real tokens); grouping by the longer side keeps both sides about 90% real.
    """
    return [max(len(source), len(target)) for source, target in zip(dataset["input_ids"], dataset["labels"])]


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length-grouped order (by `padded_lengths`), drawn from (seed, epoch) alone instead of the
    global torch RNG.

    The stock sampler shuffles with the global generator, whose state when an epoch starts depends on all that
    was drawn before (dropout included). A run resumed in epoch e > 0 starts that epoch right after `set_seed`,
    so it saw another order than the run it continues (some pairs twice, some never) and did not reproduce it.
    `epoch()` is read when the epoch's iteration starts (the Trainer's state: e.0 at the start of epoch e, e plus
    a fraction when resuming inside it), so every epoch has the same order however the run got there.
    """

    def __init__(self, batch_size: int, lengths: list[int], seed: int, epoch):
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.epoch = epoch

    def __iter__(self):
        self.generator.manual_seed(self.seed + math.floor(self.epoch()))
        return super().__iter__()


def check_checkpoint_weights(checkpoint: str | Path, model: torch.nn.Module) -> None:
    """Refuse a Trainer checkpoint whose weights would not be read from safetensors, or would not fill `model`.

    The Trainer itself falls back to unpickling `pytorch_model.bin` and loads with `strict=False`, so a missing
    tensor would only be logged and keep its random initial value.
    """
    path = Path(checkpoint) / "model.safetensors"
    if not path.is_file():
        raise ValueError(
            f"checkpoint {checkpoint} has no model.safetensors: weights are read from safetensors only "
            "(a pickle such as pytorch_model.bin is never loaded)"
        )
    try:
        with safe_open(path, framework="pt") as weights:
            saved = {name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()}
    except SafetensorError as error:
        raise ValueError(
            f"checkpoint weights {path} cannot be read ({error}): the file is truncated or corrupt"
        ) from error
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    tied = set(model._tied_weights_keys or {}) if model.config.tie_word_embeddings else set()
    problems = [f"missing: {name}" for name in sorted(expected.keys() - saved.keys() - tied)]
    problems += [
        f"wrong shape: {name} {saved[name]} != {expected[name]}"
        for name in sorted(expected.keys() & saved.keys())
        if saved[name] != expected[name]
    ]
    if problems:
        raise ValueError(f"checkpoint {checkpoint} does not fit the model; refusing to resume: " + "; ".join(problems))


class TranslationTrainer(Seq2SeqTrainer):
    """`Seq2SeqTrainer` whose evaluation keeps the dataset order and whose length-grouped training order survives a
    resume (`EpochSeededLengthGroupedSampler`).

    With `train_sampling_strategy="group_by_length"`, transformers also length-groups (and
    shuffles) evaluation batches, so predictions would not line up with the references and the
    hypotheses file with the test set. Training batches are still grouped by length.
    """

    target_tokens_seen = 0  # non-padding target tokens trained on by this process in this run

    def training_step(self, model, inputs, *args, **kwargs):
        self.target_tokens_seen += int((inputs["labels"] != -100).sum())
        return super().training_step(model, inputs, *args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or not isinstance(dataset, datasets.Dataset):
            return super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return EpochSeededLengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps,
            padded_lengths(dataset),
            seed,
            epoch=lambda: self.state.epoch or 0,
        )

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


def parse_args(argv: list[str] | None = None):
    """Flags, or a single .json/.yaml/.yml file holding every argument, into the three dataclasses."""
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, TranslationTrainingArguments))
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) == 1 and argv[0].endswith(".json"):
        model_args, data_args, training_args = parser.parse_json_file(os.path.abspath(argv[0]))
    elif len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        model_args, data_args, training_args = parser.parse_yaml_file(os.path.abspath(argv[0]))
    else:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    if not training_args.output_dir_given:
        corpus = _corpus_name(data_args)
        training_args.output_dir = os.path.join("runs", f"{corpus}-{data_args.source_lang}-{data_args.target_lang}")
    if training_args.resume_from_checkpoint == "last":
        checkpoint = last_complete_checkpoint(training_args.output_dir)
        if checkpoint is None:
            raise FileNotFoundError(
                f"--resume_from_checkpoint last: no complete checkpoint in {training_args.output_dir}"
            )
        training_args.resume_from_checkpoint = checkpoint
    return model_args, data_args, training_args


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest `checkpoint-N` in `output_dir` whose save finished, or None.

    The Trainer writes trainer_state.json last, after the weights, optimizer, scheduler and RNG state, so a save
    that a crash cut short leaves a folder without it, with a truncated one, or without weights. Such a folder is
    never resumed from: it is renamed `incomplete-checkpoint-N` (kept, but out of the way of the Trainer, which
    would otherwise count it among the `checkpoint-*` folders it keeps and delete a good one instead).
    """
    steps = {int(path.name.split("-")[1]): path for path in Path(output_dir).glob("checkpoint-*")
             if path.name.split("-")[1].isdigit()}
    for step in sorted(steps, reverse=True):
        path = steps[step]
        try:
            state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = {}
        if state.get("global_step") == step and (path / "model.safetensors").is_file():
            return str(path)
        path.rename(path.with_name(f"incomplete-{path.name}"))
        logger.warning("%s was not completely saved (a run stopped while writing it): set aside as incomplete-%s",
                       path, path.name)
    return None


def _corpus_name(data_args: DataTrainingArguments) -> str:
    if data_args.dataset_name:
        return data_args.dataset_name.rstrip("/").split("/")[-1]
    if data_args.train_file:
        return Path(data_args.train_file).name.split(".")[0]
    return Path(data_args.data_dir).name if data_args.data_dir else "multi30k"


# --------------------------------------------------------------------------- data


def load_data(data_args: DataTrainingArguments, splits: list[str], cache_dir: str | None) -> datasets.DatasetDict:
    """The requested splits of the corpus the arguments name (see DataTrainingArguments)."""
    src, tgt = data_args.source_lang, data_args.target_lang
    if data_args.dataset_name:
        raw = load_hub_dataset(data_args.dataset_name, src, tgt, data_args.dataset_config_name, cache_dir)
        where = data_args.dataset_name
    elif data_args.train_file or data_args.validation_file or data_args.test_file:
        files = {
            split: path
            for split, path in (
                ("train", data_args.train_file),
                ("validation", data_args.validation_file),
                ("test", data_args.test_file),
            )
            if path
        }
        columns = data_args.file_languages.split(",") if data_args.file_languages else None
        raw = load_parallel_files(
            files,
            src,
            tgt,
            columns=[c.strip() for c in columns] if columns else None,
            seed=data_args.split_seed,
            validation_fraction=data_args.validation_split_percentage / 100,
            test_fraction=data_args.test_split_percentage / 100,
        )
        where = ", ".join(str(p) for p in files.values())
    elif data_args.data_dir is None and not DEFAULT_DATA_DIR.is_dir():
        logger.info("%s not found: loading Multi30k from the Hub (%s)", DEFAULT_DATA_DIR, DEFAULT_HUB_DATASET)
        try:
            raw = load_hub_dataset(DEFAULT_HUB_DATASET, src, tgt, cache_dir=cache_dir)
        except Exception as e:  # offline, no network, Hub down: all end the same way for the user
            raise DataError(
                f"no local Multi30k at {DEFAULT_DATA_DIR} and the Hub dataset {DEFAULT_HUB_DATASET} could not be "
                f"loaded ({e}). Point --data_dir at a local copy of Multi30k (files train.{src}.gz, val.{src}.gz, "
                f"test_2016_flickr.{src}.gz and the same for {tgt}; plain or .gz), or go online."
            ) from e
        where = DEFAULT_HUB_DATASET
    else:
        data_dir = data_args.data_dir or DEFAULT_DATA_DIR
        stems = {
            "train": data_args.train_split_stem,
            "validation": data_args.validation_split_stem,
            "test": data_args.test_split_stem,
        }
        return load_parallel_dir(data_dir, src, tgt, split_stems=stems, splits=splits)
    missing = [split for split in splits if split not in raw]
    if missing:
        raise DataError(f"{where}: missing split(s) {', '.join(missing)} (available: {', '.join(raw)})")
    return datasets.DatasetDict({split: raw[split] for split in splits})


def _first(dataset: datasets.Dataset, limit: int | None) -> datasets.Dataset:
    return dataset if limit is None else dataset.select(range(min(limit, len(dataset))))


# --------------------------------------------------------------------------- tokenizer and model


def get_tokenizer(model_args, data_args, training_args, raw: datasets.DatasetDict):
    """An existing tokenizer if one is named (or in the checkpoint we resume), else train one.

    A new tokenizer is trained on the training split only (no validation/test text leaks into
    the vocabulary). Under DDP the local main process trains and saves it; the others wait and
    load that copy, so every process has the very same vocabulary.
    """
    existing = model_args.tokenizer_name or model_args.model_name_or_path
    checkpoint = training_args.resume_from_checkpoint
    if existing is None and checkpoint and (Path(checkpoint) / "tokenizer.json").is_file():
        existing = checkpoint
    if existing is not None:
        return AutoTokenizer.from_pretrained(existing, cache_dir=model_args.cache_dir)
    if "train" not in raw:
        raise ValueError("no tokenizer: pass --tokenizer_name or --model_name_or_path, or train (--do_train)")
    output_dir = Path(training_args.output_dir)
    with training_args.main_process_first(local=True, desc="training the tokenizer"):
        if training_args.local_process_index == 0:
            pairs = raw["train"]["translation"]
            texts = (pair[lang] for pair in pairs for lang in (data_args.source_lang, data_args.target_lang))
            tokenizer = train_bpe_tokenizer(texts, model_args.vocab_size, model_args.tokenizer_min_frequency)
            tokenizer.save_pretrained(output_dir)
            logger.info("trained a joint BPE tokenizer (%d tokens) on the training split", len(tokenizer))
        else:
            tokenizer = AutoTokenizer.from_pretrained(output_dir)
    return tokenizer


def get_model(model_args: ModelArguments, tokenizer) -> RNNSeq2SeqForConditionalGeneration:
    special = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "decoder_start_token_id": tokenizer.bos_token_id,
    }
    if model_args.model_name_or_path:
        model = AutoModelForSeq2SeqLM.from_pretrained(model_args.model_name_or_path, cache_dir=model_args.cache_dir)
        check_vocabulary(tokenizer, model.config, model_args.model_name_or_path)
        return model
    if model_args.config_name:
        config = AutoConfig.from_pretrained(model_args.config_name, cache_dir=model_args.cache_dir)
        config.update({"vocab_size": len(tokenizer), **special})
        config.validate()
    else:
        config = RNNSeq2SeqConfig(
            vocab_size=len(tokenizer),
            embedding_dim=model_args.embedding_dim,
            hidden_size=model_args.hidden_size,
            encoder_hidden_size=model_args.encoder_hidden_size,
            num_encoder_layers=model_args.num_encoder_layers,
            num_decoder_layers=model_args.num_decoder_layers,
            bidirectional_encoder=model_args.bidirectional_encoder,
            attention_type=model_args.attention_type,
            input_feeding=model_args.input_feeding,
            dropout=model_args.dropout,
            tie_word_embeddings=model_args.tie_word_embeddings,
            **special,
        )
    return RNNSeq2SeqForConditionalGeneration(config)


# --------------------------------------------------------------------------- metrics


def make_compute_metrics(tokenizer, metric, references: list[str]):
    """BLEU/chrF of generated ids against the original (untokenised, untruncated) references."""

    def compute_metrics(eval_preds) -> dict[str, float]:
        predictions = eval_preds.predictions[0] if isinstance(eval_preds.predictions, tuple) else eval_preds.predictions
        hypotheses = decode(tokenizer, predictions)
        if len(hypotheses) != len(references):
            raise RuntimeError(f"{len(hypotheses)} predictions for {len(references)} references")
        scores = metric.compute(predictions=hypotheses, references=references)
        return {"bleu": scores["bleu"], "chrf": scores["chrf"], "length_ratio": scores["length_ratio"]}

    return compute_metrics


# --------------------------------------------------------------------------- model card


def write_model_card(
    output_dir: Path, template: Path, model, model_args, data_args, results: dict, argv: list[str], repo_id: str
) -> None:
    """README.md from the Jinja template, with metadata (languages, license, model-index) and scores.

    `repo_id` is where the card's usage example loads the model from: the Hub repository, or the folder.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    src, tgt = data_args.source_lang, data_args.target_lang
    if data_args.dataset_name:
        dataset_id = data_args.dataset_name
    elif not (data_args.data_dir or data_args.train_file or data_args.validation_file or data_args.test_file):
        dataset_id = DEFAULT_HUB_DATASET  # the default corpus: Multi30k, local copy or Hub
    else:
        dataset_id = None
    dataset_label = dataset_id or _corpus_name(data_args)
    scores_by_split = {}
    if results.get("eval"):
        scores_by_split["validation"] = {"bleu": results["eval"]["eval_bleu"], "chrf": results["eval"]["eval_chrf"]}
    if results.get("test"):
        scores_by_split["test"] = results["test"]
    signatures = results.get("test", {})  # one metric configuration scores every split
    eval_results = [
        EvalResult(
            task_type="translation",
            task_name=f"Translation {src}-{tgt}",
            dataset_type=dataset_label,
            dataset_name=f"{dataset_label} ({src}-{tgt})",
            dataset_split=split,
            metric_type=metric_type,
            metric_name=name,
            metric_value=round(scores[metric_type], 2),
            metric_config=signatures.get(f"{metric_type}_signature"),
        )
        for split, scores in scores_by_split.items()
        for metric_type, name in (("bleu", "BLEU"), ("chrf", "chrF"))
    ]
    model_name = output_dir.resolve().name
    card_data = ModelCardData(
        model_name=model_name,
        language=[src, tgt],
        license=model_args.license,
        library_name="transformers",
        pipeline_tag="translation",
        tags=["translation", "seq2seq", "gru", "rnn", "attention", "custom_code"],
        datasets=[dataset_id] if dataset_id else None,
        metrics=["bleu", "chrf"],
        eval_results=eval_results or None,
    )
    config = model.config
    card = ModelCard.from_template(
        card_data,
        template_path=str(template),
        model_name=model_name,
        repo_id=repo_id,
        source_lang=src,
        target_lang=tgt,
        dataset=dataset_label,
        results=results,
        num_parameters=f"{model.num_parameters():,}",
        config=config,
        training_command=shlex.join(["python", "train.py", *argv]),
        examples=results.get("examples", []),
        usage_source=repr(results["examples"][0]["source"] if results.get("examples") else "..."),
        remote_code_transformers=TESTED_TRANSFORMERS,
        package_requirement=next(
            line for line in importlib.metadata.requires("hf-rnn-seq2seq") if line.startswith("transformers")
        ),
    )
    card.save(output_dir / "README.md")


# --------------------------------------------------------------------------- main


def _setup_logging(training_args) -> None:
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    # Our progress messages at INFO on the main process; the libraries stay at WARNING unless --log_level asks.
    logging.getLogger("hf_rnn_seq2seq").setLevel(logging.INFO if training_args.should_log else logging.WARNING)
    level = training_args.get_process_log_level()
    if training_args.log_level == "passive" and training_args.should_log:
        level = logging.WARNING
    transformers.utils.logging.set_verbosity(level)
    datasets.utils.logging.set_verbosity(level)


def main(argv: list[str] | None = None) -> dict:
    """Run the job the arguments describe; return the results (also written as JSON files)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    model_args, data_args, training_args = parse_args(argv)
    _setup_logging(training_args)
    keep_freed_memory_for_reuse()  # a step's (tokens x vocabulary) buffers reuse the last step's pages
    logger.info(
        "process %d of %d, device %s", training_args.process_index, training_args.world_size, training_args.device
    )
    set_seed(training_args.seed)
    output_dir = Path(training_args.output_dir)
    template = Path(model_args.model_card_template)
    if training_args.do_train and not template.is_file():  # fail now, not after hours of training
        raise FileNotFoundError(f"model card template {template} not found: pass --model_card_template")

    splits = []
    if training_args.do_train:
        splits.append("train")
    if training_args.do_eval or (training_args.do_train and training_args.eval_strategy != "no"):
        splits.append("validation")
    if training_args.do_predict:
        splits.append("test")
    raw = load_data(data_args, splits, model_args.cache_dir)
    if "train" in raw:
        raw["train"] = _first(raw["train"], data_args.max_train_samples)
    if "validation" in raw:
        raw["validation"] = _first(raw["validation"], data_args.max_eval_samples)
    if "test" in raw:
        raw["test"] = _first(raw["test"], data_args.max_predict_samples)

    tokenizer = get_tokenizer(model_args, data_args, training_args, raw)
    model = get_model(model_args, tokenizer)
    # Generation settings live in the generation config only (saved as generation_config.json).
    model.generation_config.num_beams = data_args.num_beams
    model.generation_config.max_length = data_args.val_max_target_length
    if training_args.generation_max_length is None:
        training_args.generation_max_length = data_args.val_max_target_length
    logger.info("model: %s parameters, %s", f"{model.num_parameters():,}", model.config.attention_type)

    src, tgt = data_args.source_lang, data_args.target_lang

    def tokenize(batch):
        sources = [pair[src] for pair in batch["translation"]]
        targets = [pair[tgt] for pair in batch["translation"]]
        features = tokenizer(sources, max_length=data_args.max_source_length, truncation=True)
        features["labels"] = tokenizer(text_target=targets, max_length=data_args.max_target_length, truncation=True)[
            "input_ids"
        ]
        return features

    tokenized = {}
    with training_args.main_process_first(desc="tokenizing"):
        for split, dataset in raw.items():
            tokenized[split] = dataset.map(
                tokenize,
                batched=True,
                remove_columns=dataset.column_names,
                num_proc=data_args.preprocessing_num_workers,
                desc=f"tokenizing {split}",
            )
    references = {split: [pair[tgt] for pair in dataset["translation"]] for split, dataset in raw.items()}

    metric = load_metric()
    callbacks = []
    if training_args.load_best_model_at_end and data_args.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=data_args.early_stopping_patience))
    trainer = TranslationTrainer(
        model=model,
        args=training_args,
        train_dataset=tokenized.get("train"),
        eval_dataset=tokenized.get("validation"),
        processing_class=tokenizer,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        compute_metrics=make_compute_metrics(tokenizer, metric, references.get("validation", [])),
        callbacks=callbacks,
    )

    results: dict = {}
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        # The Trainer switches the recurrent state off for training (args.use_cache); the published
        # model should generate step by step.
        trainer.model.config.use_cache = True
        trainer.save_model()  # model, code files, generation config, tokenizer
        metrics = dict(train_result.metrics)
        metrics["train_samples"] = len(tokenized["train"])
        metrics["world_size"] = trainer.accelerator.num_processes  # processes that shared each gradient step
        # Throughput as NMT toolkits report it: non-padding target tokens per second, all processes together.
        target_tokens = trainer.accelerator.reduce(torch.tensor(trainer.target_tokens_seen), reduction="sum").item()
        metrics["train_target_tokens"] = target_tokens
        metrics["train_target_tokens_per_second"] = round(target_tokens / metrics["train_runtime"], 1)
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        results["train"] = metrics

    if training_args.do_eval:
        metrics = trainer.evaluate(num_beams=data_args.num_beams, max_length=data_args.val_max_target_length)
        metrics["eval_samples"] = len(tokenized["validation"])
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        results["eval"] = metrics

    if training_args.do_predict:
        trainer.compute_metrics = make_compute_metrics(tokenizer, metric, references["test"])
        start = time.perf_counter()
        prediction = trainer.predict(
            tokenized["test"], num_beams=data_args.num_beams, max_length=data_args.val_max_target_length
        )
        seconds = time.perf_counter() - start
        hypotheses = decode(tokenizer, prediction.predictions)
        scores = metric.compute(predictions=hypotheses, references=references["test"])
        test = {
            "bleu": scores["bleu"],
            "chrf": scores["chrf"],
            "bleu_signature": scores["bleu_signature"],
            "chrf_signature": scores["chrf_signature"],
            "length_ratio": scores["length_ratio"],
            "brevity_penalty": scores["brevity_penalty"],
            "num_samples": len(hypotheses),
            "num_beams": data_args.num_beams,
            "max_length": data_args.val_max_target_length,
            "translation_seconds": round(seconds, 2),
            "sentences_per_second": round(len(hypotheses) / seconds, 2),
            "source_lang": src,
            "target_lang": tgt,
        }
        results["test"] = test
        sources = [pair[src] for pair in raw["test"]["translation"]]
        results["examples"] = [
            {"source": s, "reference": r, "translation": h}
            for s, r, h in list(zip(sources, references["test"], hypotheses))[: data_args.num_examples_to_print]
        ]
        if trainer.is_world_process_zero():
            output_dir.mkdir(parents=True, exist_ok=True)
            (output_dir / TEST_RESULTS_FILE).write_text(json.dumps(test, indent=2) + "\n", encoding="utf-8")
            (output_dir / HYPOTHESES_FILE).write_text("".join(h + "\n" for h in hypotheses), encoding="utf-8")
            print(f"\ntest {src}->{tgt}: BLEU {test['bleu']:.2f}, chrF {test['chrf']:.2f} ({test['bleu_signature']})")
            for example in results["examples"]:
                print(f"\n  source:      {example['source']}")
                print(f"  reference:   {example['reference']}")
                print(f"  translation: {example['translation']}")

    if training_args.do_train and trainer.is_world_process_zero():
        repo_id = training_args.hub_model_id or output_dir.resolve().name
        write_model_card(
            output_dir, template, trainer.model, model_args, data_args, results, argv,
            repo_id=repo_id if training_args.push_at_end else str(output_dir),
        )  # fmt: skip
        logger.info("model, tokenizer and model card saved in %s", output_dir)
        if training_args.push_at_end:
            push_output_folder(output_dir, repo_id, training_args)
    return results


# What an output folder holds beside the model repository: checkpoints (with pickled optimizer and RNG state), the
# Trainer's pickled arguments, logs.
NOT_PUBLISHED = ["checkpoint-*", "incomplete-checkpoint-*", "*.bin", "*.pt", "*.pth", "runs/*", "_*"]


def push_output_folder(output_dir: Path, repo_id: str, training_args) -> str:
    """Upload the model repository in `output_dir` (one commit) and return the commit URL."""
    from huggingface_hub import create_repo, upload_folder

    token = training_args.hub_token
    repo_id = create_repo(repo_id, token=token, private=training_args.hub_private_repo, exist_ok=True).repo_id
    commit = upload_folder(
        repo_id=repo_id,
        folder_path=output_dir,
        commit_message="End of training",
        token=token,
        revision=training_args.hub_revision,
        ignore_patterns=NOT_PUBLISHED,
    )
    logger.info("pushed %s to %s", output_dir, commit.commit_url)
    return commit.commit_url
