"""Train, evaluate and publish an RNN translation model: the job behind `train.py`, as named steps.

Modelled on transformers' `examples/pytorch/translation/run_translation.py`, with what a from-scratch RNN needs on
top: a tokenizer trained on the training split, sacreBLEU through a local `evaluate` module, and an output folder
that is a complete Hub model repository (weights, code, tokenizer, generation config, model card with the measured
scores). The arguments are in `arguments.py`, the Trainer in `trainer.py`, checkpoint checks in `checkpoints.py`,
the model card and the upload in `publishing.py`, the corpora in `data.py`.

Run with no arguments to train the default model on Multi30k German->English::

    python train.py
    python train.py --source_lang en --target_lang fr --num_train_epochs 5
    python train.py my_settings.yaml        # or .json: every argument in one file
    torchrun --nproc_per_node 2 train.py     # DDP (gloo on CPU, nccl on GPUs)
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import datasets
import psutil
import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    EarlyStoppingCallback,
    set_seed,
)

from . import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration
from .allocator import give_back_freed_memory, keep_freed_memory_for_reuse
from .arguments import FINE_TUNABLE_SETTINGS, DataTrainingArguments, ModelArguments, parse_args
from .checkpoints import last_complete_checkpoint, set_aside_incomplete
from .corpus import load_data
from .data import first
from .metrics import load_metric
from .preprocessing import cached_tokenizer, clean_training_pairs, tokenize_split
from .publishing import push_output_folder, write_model_card
from .tokenization import check_vocabulary
from .trainer import TranslationTrainer, make_compute_metrics
from .translation import decode

logger = logging.getLogger(__name__)

HYPOTHESES_FILE = "generated_predictions.txt"
TEST_RESULTS_FILE = "test_results.json"


def resolve_resume_checkpoint(training_args) -> None:
    """`--resume_from_checkpoint last`: set cut-short checkpoints aside, then resume the newest complete one."""
    if training_args.resume_from_checkpoint != "last":
        return
    set_aside_incomplete(training_args.output_dir)
    checkpoint = last_complete_checkpoint(training_args.output_dir)
    if checkpoint is None:
        raise FileNotFoundError(f"--resume_from_checkpoint last: no complete checkpoint in {training_args.output_dir}")
    training_args.resume_from_checkpoint = checkpoint


def load_splits(model_args: ModelArguments, data_args: DataTrainingArguments, training_args) -> dict:
    """The splits the job needs (train to train, validation to evaluate, test to predict), cut to the --max_*."""
    wanted = {
        "train": (training_args.do_train, data_args.max_train_samples),
        "validation": (
            training_args.do_eval or (training_args.do_train and training_args.eval_strategy != "no"),
            data_args.max_eval_samples,
        ),
        "test": (training_args.do_predict, data_args.max_predict_samples),
    }
    if data_args.streaming and training_args.do_train and training_args.max_steps <= 0:
        raise ValueError("--streaming: a stream has no length, so pass --max_steps (the number of updates)")
    splits = [split for split, (needed, _) in wanted.items() if needed]
    with training_args.main_process_first(local=True, desc="reading the corpus"):  # the others read its cache
        raw = load_data(data_args, splits, model_args.cache_dir)
    return {split: first(dataset, wanted[split][1]) for split, dataset in raw.items()}


def get_tokenizer(model_args, data_args, training_args, raw: dict):
    """An existing tokenizer if one is named (or in the checkpoint we resume), else train one.

    A new tokenizer is trained on (a sample of) the training split only (no validation/test text leaks into
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
            tokenizer = cached_tokenizer(
                raw["train"], data_args.source_lang, data_args.target_lang, model_args.vocab_size,
                model_args.tokenizer_min_frequency, data_args.tokenizer_train_samples, training_args.seed,
            )  # fmt: skip
            tokenizer.save_pretrained(output_dir)
            logger.info("joint BPE tokenizer of the training split: %d tokens", len(tokenizer))
        else:
            tokenizer = AutoTokenizer.from_pretrained(output_dir)
    return tokenizer


def get_model(model_args: ModelArguments, tokenizer) -> RNNSeq2SeqForConditionalGeneration:
    """The checkpoint to fine-tune, with the settings given that fine-tuning may change; or a new model from
    --config_name or the recipe, with the settings given, sized to the tokenizer."""
    special = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "decoder_start_token_id": tokenizer.bos_token_id,
    }
    given = model_args.given_model_settings()
    if model_args.model_name_or_path:
        config = AutoConfig.from_pretrained(model_args.model_name_or_path, cache_dir=model_args.cache_dir)
        check_fine_tuning_settings(config, given, model_args.model_name_or_path)
        config.update(given)
        config.validate()
        model = AutoModelForSeq2SeqLM.from_pretrained(
            model_args.model_name_or_path, config=config, cache_dir=model_args.cache_dir
        )
        check_vocabulary(tokenizer, model.config, model_args.model_name_or_path)
        return model
    if model_args.config_name:
        config = AutoConfig.from_pretrained(model_args.config_name, cache_dir=model_args.cache_dir)
        config.update({"vocab_size": len(tokenizer), **special, **given})
        config.validate()
    else:
        config = RNNSeq2SeqConfig(vocab_size=len(tokenizer), **special, **model_args.new_model_settings())
    return RNNSeq2SeqForConditionalGeneration(config)


def check_fine_tuning_settings(config, given: dict, checkpoint: str) -> None:
    """Refuse model flags that fine-tuning cannot honour, rather than train something else than was asked."""
    if given and not isinstance(config, RNNSeq2SeqConfig):
        raise ValueError(f"{checkpoint} is a {config.model_type} model: the model flags {sorted(given)} are RNNSeq2Seq's")
    fixed = {name: value for name, value in given.items() if name not in FINE_TUNABLE_SETTINGS}
    changed = [f"--{name} {value} (the checkpoint has {getattr(config, name)!r})" for name, value in fixed.items()
               if value != getattr(config, name)]  # fmt: skip
    if changed:
        raise ValueError(
            f"fine-tuning {checkpoint} keeps its architecture, but these flags change it: {'; '.join(changed)}. "
            f"Only {', '.join(FINE_TUNABLE_SETTINGS)} can change."
        )


def tokenize_splits(raw: dict, tokenizer, data_args, training_args) -> tuple[dict, dict]:
    """Every split tokenized (cached); the training split cleaned, validation and test sentences cut to the limits
    (a test sentence is always translated). Returns the tokenized splits and the cleaning's counts."""
    limits = (data_args.max_source_length, data_args.max_target_length)
    tokenized, dropped = {}, {}
    with training_args.main_process_first(desc="tokenizing"):
        for split, dataset in raw.items():
            tokenized[split] = tokenize_split(
                dataset, tokenizer, data_args.source_lang, data_args.target_lang, None if split == "train" else limits,
                data_args.preprocessing_num_workers, f"tokenizing {split}",
            )  # fmt: skip
        if "train" in tokenized:
            tokenized["train"], dropped = clean_training_pairs(tokenized["train"], *limits, data_args.max_length_ratio)
    return tokenized, dropped


def set_generation_limits(model, data_args, training_args) -> None:
    """Beams and length for evaluation, the test set and generation_config.json, set in one place."""
    # Generation settings live in the generation config only (saved as generation_config.json).
    model.generation_config.num_beams = data_args.num_beams
    model.generation_config.max_length = data_args.val_max_target_length
    if training_args.generation_max_length is None:
        training_args.generation_max_length = data_args.val_max_target_length


def build_trainer(model, tokenizer, metric, raw, tokenized, data_args, training_args) -> TranslationTrainer:
    callbacks = []
    if training_args.load_best_model_at_end and data_args.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=data_args.early_stopping_patience))
    validation = raw.get("validation")
    references = [pair[data_args.target_lang] for pair in validation["translation"]] if validation is not None else []
    return TranslationTrainer(
        model=model,
        args=training_args,
        train_dataset=tokenized.get("train"),
        eval_dataset=tokenized.get("validation"),
        processing_class=tokenizer,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        compute_metrics=make_compute_metrics(tokenizer, metric, references),
        callbacks=callbacks,
    )


@contextmanager
def timed(seconds: dict, stage: str):
    start = time.perf_counter()
    yield
    seconds[f"{stage}_seconds"] = round(time.perf_counter() - start, 2)
    logger.info("%s: %.1f s", stage, seconds[f"{stage}_seconds"])


def train(trainer: TranslationTrainer, training_args, train_dataset, preparation: dict) -> dict:
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    # The Trainer switches the recurrent state off for training (args.use_cache); the published model should
    # generate step by step.
    trainer.model.config.use_cache = True
    trainer.save_model()  # model, code files, generation config, tokenizer
    metrics = dict(train_result.metrics)
    if isinstance(train_dataset, datasets.Dataset):  # (a stream has no length)
        metrics["train_samples"] = len(train_dataset)
    metrics.update(preparation)  # pairs the cleaning dropped, by reason; seconds each stage took
    if trainer.first_step_at is not None:  # (none when resumed at the last step)
        # From the process's start (imports included) to the first training step: what a user waits.
        metrics["seconds_to_first_step"] = round(trainer.first_step_at - psutil.Process().create_time(), 2)
    metrics["world_size"] = trainer.accelerator.num_processes  # processes that shared each gradient step
    # Throughput as NMT toolkits report it: non-padding target tokens per second, all processes together.
    target_tokens = trainer.accelerator.reduce(torch.tensor(trainer.target_tokens_seen), reduction="sum").item()
    metrics["train_target_tokens"] = target_tokens
    metrics["train_target_tokens_per_second"] = round(target_tokens / metrics["train_runtime"], 1)
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    return metrics


def evaluate(trainer: TranslationTrainer, data_args, eval_dataset) -> dict:
    metrics = trainer.evaluate(num_beams=data_args.num_beams, max_length=data_args.val_max_target_length)
    metrics["eval_samples"] = len(eval_dataset)
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)
    return metrics


def predict(trainer: TranslationTrainer, tokenizer, metric, data_args, raw_test, test_dataset, output_dir: Path):
    """Translate and score the test split; write the translations and scores; return (scores, examples)."""
    src, tgt = data_args.source_lang, data_args.target_lang
    references = [pair[tgt] for pair in raw_test["translation"]]
    trainer.compute_metrics = make_compute_metrics(tokenizer, metric, references)
    start = time.perf_counter()
    prediction = trainer.predict(test_dataset, num_beams=data_args.num_beams, max_length=data_args.val_max_target_length)
    seconds = time.perf_counter() - start
    hypotheses = decode(tokenizer, prediction.predictions, generated=True)
    scores = metric.compute(predictions=hypotheses, references=references)
    test = {
        **{key: scores[key] for key in ("bleu", "chrf", "bleu_signature", "chrf_signature", "length_ratio")},
        "brevity_penalty": scores["brevity_penalty"],
        "num_samples": len(hypotheses),
        "num_beams": data_args.num_beams,
        "max_length": data_args.val_max_target_length,
        "translation_seconds": round(seconds, 2),
        "sentences_per_second": round(len(hypotheses) / seconds, 2),
        "source_lang": src,
        "target_lang": tgt,
    }
    sources = [pair[src] for pair in raw_test["translation"]]
    examples = [
        {"source": s, "reference": r, "translation": h}
        for s, r, h in list(zip(sources, references, hypotheses))[: data_args.num_examples_to_print]
    ]
    if trainer.is_world_process_zero():
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / TEST_RESULTS_FILE).write_text(json.dumps(test, indent=2) + "\n", encoding="utf-8")
        (output_dir / HYPOTHESES_FILE).write_text("".join(h + "\n" for h in hypotheses), encoding="utf-8")
        print(f"\ntest {src}->{tgt}: BLEU {test['bleu']:.2f}, chrF {test['chrf']:.2f} ({test['bleu_signature']})")
        for example in examples:
            print(f"\n  source:      {example['source']}")
            print(f"  reference:   {example['reference']}")
            print(f"  translation: {example['translation']}")
    return test, examples


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
    resolve_resume_checkpoint(training_args)
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

    seconds: dict[str, float] = {}  # of the preparation stages, for train_results.json
    with timed(seconds, "reading"):
        raw = load_splits(model_args, data_args, training_args)
    with timed(seconds, "tokenizer"):
        tokenizer = get_tokenizer(model_args, data_args, training_args, raw)
    model = get_model(model_args, tokenizer)
    set_generation_limits(model, data_args, training_args)
    logger.info("model: %s parameters, %s", f"{model.num_parameters():,}", model.config.attention_type)
    with timed(seconds, "tokenization"):
        tokenized, dropped = tokenize_splits(raw, tokenizer, data_args, training_args)
    # Training reads the tokenized cache from here on. Letting go of the training pairs unmaps their table, whose pages
    # the tokenizer's sample touched: at 10M pairs about 0.4 GB that would otherwise stay resident the whole run.
    raw.pop("train", None)
    give_back_freed_memory()

    metric = load_metric()
    trainer = build_trainer(model, tokenizer, metric, raw, tokenized, data_args, training_args)

    results: dict = {}
    if training_args.do_train:
        results["train"] = train(trainer, training_args, tokenized["train"], {**dropped, **seconds})
    if training_args.do_eval:
        results["eval"] = evaluate(trainer, data_args, tokenized["validation"])
    if training_args.do_predict:
        results["test"], results["examples"] = predict(
            trainer, tokenizer, metric, data_args, raw["test"], tokenized["test"], output_dir
        )
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
