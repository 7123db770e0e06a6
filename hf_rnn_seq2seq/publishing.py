"""Publishing a trained model: the README.md model card, and the upload of the output folder to the Hub."""

from __future__ import annotations

import importlib.metadata
import logging
import shlex
from pathlib import Path

from .arguments import corpus_name
from .data import DEFAULT_HUB_DATASET
from .modeling_rnn_seq2seq import TESTED_TRANSFORMERS

logger = logging.getLogger(__name__)


def _eval_results(results: dict, dataset_label: str, src: str, tgt: str) -> list:
    """BLEU and chrF of the validation and test splits as the Hub's model-index entries."""
    from huggingface_hub import EvalResult

    scores_by_split = {}
    if results.get("eval"):
        scores_by_split["validation"] = {"bleu": results["eval"]["eval_bleu"], "chrf": results["eval"]["eval_chrf"]}
    if results.get("test"):
        scores_by_split["test"] = results["test"]
    signatures = results.get("test", {})  # one metric configuration scores every split
    return [
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


def write_model_card(
    output_dir: Path, template: Path, model, model_args, data_args, results: dict, argv: list[str], repo_id: str
) -> None:
    """README.md from the Jinja template, with metadata (languages, license, model-index) and scores.

    `repo_id` is where the card's usage example loads the model from: the Hub repository, or the folder.
    """
    from huggingface_hub import ModelCard, ModelCardData

    src, tgt = data_args.source_lang, data_args.target_lang
    if data_args.dataset_name:
        dataset_id = data_args.dataset_name
    elif not (data_args.data_dir or data_args.train_file or data_args.validation_file or data_args.test_file):
        dataset_id = DEFAULT_HUB_DATASET  # the default corpus: Multi30k, local copy or Hub
    else:
        dataset_id = None
    dataset_label = dataset_id or corpus_name(data_args)
    eval_results = _eval_results(results, dataset_label, src, tgt)
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
