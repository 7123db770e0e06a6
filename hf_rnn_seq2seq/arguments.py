"""train.py's arguments: the model, the data and the training, as transformers' `HfArgumentParser` dataclasses.

Modelled on transformers' `examples/pytorch/translation/run_translation.py` (same argument names where the concept is
the same), with the defaults that train a useful GRU model with no flags at all. The model's flags are
RNNSeq2SeqConfig's fields (names, types and help from the config); the recipe's model, where it differs from the
config's defaults, is `RECIPE_MODEL_SETTINGS`.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import sys
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path

import torch
from transformers import HfArgumentParser, Seq2SeqTrainingArguments

from .configuration_rnn_seq2seq import (
    ATTENTION_TYPES, DECODER_INITS, DECODER_TYPES, RNN_TYPES, VOCAB_SIZE, RNNSeq2SeqConfig,
)  # fmt: skip
from .corpus import DATA_ENV_VARIABLE, DEFAULT_HUB_DATASET
from .data import MULTI30K_SPLIT_STEMS
from .precision import native_bfloat16
from .translation import MAX_SOURCE_LENGTH, NUM_BEAMS

logger = logging.getLogger(__name__)

# Package data (pyproject.toml), so that an installed wheel has it too.
DEFAULT_MODEL_CARD_TEMPLATE = Path(__file__).resolve().with_name("model_card.md")


# What `python train.py` trains where that differs from RNNSeq2SeqConfig's own defaults: the recipe's model,
# stated here once (benchmarks/recipes/multi30k-de-en.yaml writes every value out; a test keeps the two equal).
RECIPE_MODEL_SETTINGS = {"encoder_hidden_size": 256, "dropout": 0.3, "label_smoothing": 0.1}
# What `--decoder_type cgru` brings along unless given: the rest of Marian's s2s / Nematus decoder.
CONDITIONAL_GRU_SETTINGS = {
    "attention_type": "bahdanau", "deep_output": True, "decoder_init": "mean_bridge", "shared_bridge": True,
}  # fmt: skip
# Config fields that are not flags: the tokenizer decides the vocabulary and its special tokens; the rest is fixed.
_NOT_SETTABLE = {
    "vocab_size", "source_vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id", "use_cache",
    "is_encoder_decoder",
}  # fmt: skip
_CHOICES = {
    "attention_type": ATTENTION_TYPES, "rnn_type": RNN_TYPES, "decoder_type": DECODER_TYPES,
    "decoder_init": DECODER_INITS,
}  # fmt: skip
# What fine-tuning (--model_name_or_path) may change; every other setting defines the checkpoint's tensors.
FINE_TUNABLE_SETTINGS = ("dropout", "label_smoothing")


def _config_help() -> dict[str, str]:
    """Each field's description from the "Args:" section of RNNSeq2SeqConfig's docstring, where it is written."""
    described, name = {}, None
    for line in RNNSeq2SeqConfig.__doc__.split("Args:", 1)[1].splitlines():
        entry = re.match(r" {8}(\w+): (.*)", line)
        if entry:
            name = entry[1]
            described[name] = entry[2]
        elif name and line.strip():
            described[name] += " " + line.strip()
    return described


def _model_setting_fields() -> list[tuple]:
    """One flag per settable RNNSeq2SeqConfig field, named, typed and described as the config has it. Each defaults
    to None, "not given", so that fine-tuning can tell a given setting from the recipe's default."""
    described = _config_help()
    fields = []
    for name, parameter in inspect.signature(RNNSeq2SeqConfig.__init__).parameters.items():
        if name in ("self", "kwargs") or name in _NOT_SETTABLE:
            continue
        default = RECIPE_MODEL_SETTINGS.get(name, parameter.default)
        # The default shown is the recipe's, not the field's None; "%(default).0s" keeps argparse from adding that.
        shown = "" if default is None else f" (default: {default})"
        metadata = {"help": f"{described[name]}{shown}%(default).0s"}
        if name in _CHOICES:
            metadata["choices"] = list(_CHOICES[name])
        # A plain bool keeps HfArgumentParser's `--flag` (true) and `--flag false`; other types may be None.
        kind = bool if parameter.annotation is bool else parameter.annotation | None
        fields.append((name, kind, field(default=None, metadata=metadata)))
    return fields


@dataclass
class ModelSourceArguments:
    """Where the model and tokenizer come from, and how a new tokenizer is trained."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Fine-tune this checkpoint (folder or Hub id) instead of training from scratch."}
    )
    config_name: str | None = field(
        default=None,
        metadata={"help": "Start from this config (its vocabulary is the tokenizer's; model flags given override it)."},
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Reuse this tokenizer instead of training one on the training split."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub downloads are cached."})
    vocab_size: int = field(
        default=VOCAB_SIZE,
        metadata={"help": "Size of the joint BPE vocabulary trained here (the model's vocab_size)."},
    )
    tokenizer_min_frequency: int = field(default=2, metadata={"help": "Minimum count of a BPE merge."})
    license: str = field(default="apache-2.0", metadata={"help": "License tag written into the model card."})
    model_card_template: str = field(
        default=str(DEFAULT_MODEL_CARD_TEMPLATE), metadata={"help": "Jinja template of the README.md model card."}
    )

    def given_model_settings(self) -> dict:
        """The RNNSeq2SeqConfig settings given as flags."""
        return {name: getattr(self, name) for name in MODEL_SETTINGS if getattr(self, name) is not None}

    def new_model_settings(self) -> dict:
        """The settings of a model trained from scratch: the config's defaults, the recipe's (and the conditional
        GRU's where that decoder is asked for), then the flags'."""
        parameters = inspect.signature(RNNSeq2SeqConfig.__init__).parameters
        defaults = {name: parameters[name].default for name in MODEL_SETTINGS}
        given = self.given_model_settings()
        decoder = CONDITIONAL_GRU_SETTINGS if given.get("decoder_type") == "cgru" else {}
        return {**defaults, **RECIPE_MODEL_SETTINGS, **decoder, **given}


_MODEL_SETTING_FIELDS = _model_setting_fields()
MODEL_SETTINGS = tuple(name for name, _, _ in _MODEL_SETTING_FIELDS)
ModelArguments = make_dataclass(
    "ModelArguments",
    _MODEL_SETTING_FIELDS,
    bases=(ModelSourceArguments,),
    namespace={
        "__doc__": "Where the model comes from, and every RNNSeq2SeqConfig setting of a model trained here.",
        "__module__": __name__,
    },
)


@dataclass
class DataTrainingArguments:
    """Which corpus, which direction, how long the sequences and how many examples."""

    source_lang: str = field(default="de", metadata={"help": "Source language code, e.g. de."})
    target_lang: str = field(default="en", metadata={"help": "Target language code, e.g. en."})
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Directory of {split}.{lang}[.gz] files (Multi30k layout). Default, when no corpus is named: "
            f"${DATA_ENV_VARIABLE}/multi30k, or in a source checkout ../shared/data/multi30k next to it, else the Hub "
            f"dataset {DEFAULT_HUB_DATASET}."
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
    max_source_length: int = field(
        default=MAX_SOURCE_LENGTH,
        metadata={"help": "Training pairs with more source tokens (EOS included) are dropped; longer validation and "
                  "test sources are cut."},
    )  # fmt: skip
    max_target_length: int = field(
        default=128, metadata={"help": "Training pairs with more target tokens (EOS included) are dropped."}
    )
    max_length_ratio: float = field(
        default=9.0,
        metadata={"help": "Training pairs whose longer side has more than this many times the tokens of the shorter "
                  "are dropped (0: no limit)."},
    )  # fmt: skip
    val_max_target_length: int | None = field(
        default=None, metadata={"help": "Generation max_length for evaluation and the saved generation config."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training pairs."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N validation pairs."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Use only the first N test pairs."})
    num_beams: int = field(
        default=NUM_BEAMS,
        metadata={"help": "Beam size for the final evaluation, the test set and generation_config.json."},
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes that tokenize (default: the available CPU cores)."}
    )
    tokenizer_train_samples: int = field(
        default=1_000_000,
        metadata={"help": "Training pairs (a seeded sample) the new tokenizer is trained on; all when there are fewer."},
    )
    streaming: bool = field(
        default=False,
        metadata={"help": "Read the Hub dataset (--dataset_name) as a stream instead of downloading it whole (needs "
                  "--max_steps: a stream has no length)."},
    )  # fmt: skip
    early_stopping_patience: int = field(
        default=3, metadata={"help": "Stop after this many evaluations without a better BLEU (0: never)."}
    )
    num_examples_to_print: int = field(default=5, metadata={"help": "Test translations printed at the end."})

    def __post_init__(self):
        if self.val_max_target_length is None:
            self.val_max_target_length = self.max_target_length
        if self.preprocessing_num_workers is None:
            self.preprocessing_num_workers = len(os.sched_getaffinity(0))
        if self.streaming and not self.dataset_name:
            raise ValueError("--streaming reads a Hub dataset: pass --dataset_name (local files are read in a stream "
                             "anyway)")  # fmt: skip


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
    label_smoothing_factor: float = field(
        default=0.0, metadata={"help": "Not used: train.py's label smoothing is the model's own, --label_smoothing."}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    max_tokens_per_batch: int | None = field(
        default=None,
        metadata={"help": "Batches of similar-length pairs, as many as fit in N padded tokens on each side (source and "
                  "target), instead of --per_device_train_batch_size pairs; per process, shuffled per epoch."},
    )  # fmt: skip
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
        if not torch.accelerator.is_available():
            self._train_on_the_cpu()
        if not (self.do_train or self.do_eval or self.do_predict):
            # No --do_* flag: the default job does all three. (Checked before the base class sets
            # do_eval from eval_strategy.)
            self.do_train = self.do_eval = self.do_predict = True
        if self.eval_strategy == "no" and self.load_best_model_at_end:
            logger.info("eval_strategy='no': no best model to load at the end")
            self.load_best_model_at_end = False
        if self.label_smoothing_factor:
            # The Trainer would smooth the labels a second way, beside the model's loss, and ignore the model's.
            raise ValueError(
                "--label_smoothing_factor is not used by train.py: label smoothing is the model's own setting "
                f"(RNNSeq2SeqConfig.label_smoothing): pass --label_smoothing {self.label_smoothing_factor}"
            )
        if self.metric_for_best_model in ("bleu", "chrf") and not self.predict_with_generate:
            raise ValueError(f"metric_for_best_model={self.metric_for_best_model} needs --predict_with_generate")
        super().__post_init__()

    def _train_on_the_cpu(self) -> None:
        """Without GPUs, the settings the Trainer needs told: use_cpu for several processes (else it sees no
        distributed setup and every process trains its own copy of the model on all the data) and for bf16 (else
        it refuses bf16 as unsupported by a GPU), once the CPU is known to compute bf16 natively."""
        if self.bf16 and not native_bfloat16(torch.device("cpu")):
            raise ValueError(
                "--bf16 true: this CPU does not compute bfloat16 natively (it has neither AVX-512 BF16 nor AMX), so "
                "bf16 training would be slower than float32 here: leave --bf16 out"
            )
        if self.bf16 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
            self.use_cpu = True


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
