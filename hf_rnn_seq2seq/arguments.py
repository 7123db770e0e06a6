"""train.py's arguments: the model, the data and the training, as transformers' `HfArgumentParser` dataclasses.

Modelled on transformers' `examples/pytorch/translation/run_translation.py` (same argument names where the concept is
the same), with the defaults that train a useful GRU model with no flags at all.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser, Seq2SeqTrainingArguments

from .configuration_rnn_seq2seq import ATTENTION_TYPES
from .data import DEFAULT_HUB_DATASET, MULTI30K_SPLIT_STEMS

logger = logging.getLogger(__name__)

DEFAULT_MODEL_CARD_TEMPLATE = Path(__file__).resolve().parents[1] / "model_card.md"
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
        corpus = corpus_name(data_args)
        training_args.output_dir = os.path.join("runs", f"{corpus}-{data_args.source_lang}-{data_args.target_lang}")
    return model_args, data_args, training_args


def corpus_name(data_args: DataTrainingArguments) -> str:
    """A short name for the corpus the arguments name: the output folder's and the model card's."""
    if data_args.dataset_name:
        return data_args.dataset_name.rstrip("/").split("/")[-1]
    if data_args.train_file:
        return Path(data_args.train_file).name.split(".")[0]
    return Path(data_args.data_dir).name if data_args.data_dir else "multi30k"
