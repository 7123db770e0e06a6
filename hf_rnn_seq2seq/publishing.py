"""Publishing a trained model: the README.md model card, and the upload of the output folder to the Hub."""

from __future__ import annotations

import importlib.metadata
import logging
import shlex
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .arguments import corpus_name
from .corpus import DEFAULT_HUB_DATASET
from .modeling_rnn_seq2seq import TESTED_TRANSFORMERS

logger = logging.getLogger(__name__)


def _eval_results(results: dict, dataset_label: str, src: str, tgt: str) -> list:
    """BLEU and chrF of the validation and test splits as the Hub's model-index entries."""

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


# Each of ATTENTION_TYPES in words, for the model cards.
ATTENTION_IN_WORDS = {
    "none": "no attention (a fixed context vector)",
    "bahdanau": "Bahdanau (additive) attention",
    "luong_dot": "Luong dot-product attention",
    "luong_general": "Luong general (bilinear) attention",
    "luong_concat": "Luong concat (additive) attention",
}
# The attention types whose scorer has a hidden layer, `attention_hidden_size` wide (the config's docstring).
ADDITIVE_ATTENTION_TYPES = ("bahdanau", "luong_concat")


def architecture_in_words(config) -> str:
    """The model in words, e.g. "LSTM encoder–decoder with Bahdanau (additive) attention and input feeding"."""
    attention = ATTENTION_IN_WORDS[config.attention_type]
    attended = "without attention" if config.attention_type == "none" else f"with {attention}"
    feeding = " and input feeding" if config.input_feeding else ""
    return f"{config.rnn_type.upper()} encoder–decoder {attended}{feeding}"


def untied_output_note(toolkit: str) -> str:
    """The model card's note where `toolkit` tied the output layer to target embeddings that are not the source's."""
    return (
        f"{toolkit} ties the output layer to the target embeddings; with separate source and target vocabularies "
        "they are saved here as two equal tensors, which fine-tuning trains apart"
    )


def save_imported_model_card(output_dir: Path, data: ModelCardData, title: str, summary: str, toolkit: str,
                             notes: list[str]) -> None:
    """The README.md of a folder an importer wrote: metadata, what it is, how to load it, how it differs from
    `toolkit`."""
    differences = "".join(f"- {note}\n" for note in notes) or "- none known for this model's settings\n"
    ModelCard(
        f"---\n{data.to_yaml()}\n---\n\n# {title}\n\n{summary}\n\n"
        "```python\n"
        "from transformers import AutoModelForSeq2SeqLM, AutoTokenizer\n\n"
        f'tokenizer = AutoTokenizer.from_pretrained("{output_dir.name}")\n'
        f'model = AutoModelForSeq2SeqLM.from_pretrained("{output_dir.name}", trust_remote_code=True)\n'
        'batch = tokenizer(["..."], return_tensors="pt")\n'
        "print(tokenizer.batch_decode(model.generate(**batch), skip_special_tokens=True))\n"
        "```\n\n"
        f"## Differences from {toolkit}\n\n{differences}"
    ).save(output_dir / "README.md")


def model_tags(config, *extra: str) -> list[str]:
    """The card's Hub tags: the task, the cell ("gru" or "lstm"), attention where the model has it, and `extra`."""
    attention = [] if config.attention_type == "none" else ["attention"]
    return ["translation", "seq2seq", "rnn", config.rnn_type, *attention, *extra]


def _dataset_id(data_args) -> str | None:
    """The Hub dataset the card's metadata names: --dataset_name, or for the default corpus (no data argument) its
    Hub copy; None for local files."""
    if data_args.dataset_name:
        return data_args.dataset_name
    if not (data_args.data_dir or data_args.train_file or data_args.validation_file or data_args.test_file):
        return DEFAULT_HUB_DATASET  # the default corpus: Multi30k, local copy or Hub
    return None


def _card_data(model, model_args, data_args, results: dict, model_name: str) -> ModelCardData:
    """The card's metadata: languages, license, tags, datasets, the base model and the scores (model-index)."""
    src, tgt = data_args.source_lang, data_args.target_lang
    dataset_id = _dataset_id(data_args)
    base_model = model_args.model_name_or_path
    return ModelCardData(
        model_name=model_name,
        language=[src, tgt],
        license=model_args.license,
        library_name="transformers",
        pipeline_tag="translation",
        tags=model_tags(model.config, "custom_code"),
        datasets=[dataset_id] if dataset_id else None,
        # The Hub refuses a base_model that is not a model id: a local folder is named in the text only.
        base_model=base_model if base_model and not Path(base_model).exists() else None,
        metrics=["bleu", "chrf"],
        eval_results=_eval_results(results, dataset_id or corpus_name(data_args), src, tgt) or None,
    )


def write_model_card(
    output_dir: Path, template: Path, model, model_args, data_args, results: dict, argv: list[str], repo_id: str
) -> None:
    """README.md from the Jinja template, with metadata (languages, license, model-index) and scores: what this model
    is (cell, attention, sizes), what it was trained on and from (a fine-tuned checkpoint's base), what it scored.

    `repo_id` is where the card's usage example loads the model from: the Hub repository, or the folder.
    """
    model_name = output_dir.resolve().name
    config = model.config
    card = ModelCard.from_template(
        _card_data(model, model_args, data_args, results, model_name),
        template_path=str(template),
        model_name=model_name,
        repo_id=repo_id,
        source_lang=data_args.source_lang,
        target_lang=data_args.target_lang,
        dataset=_dataset_id(data_args) or corpus_name(data_args),
        results=results,
        num_parameters=f"{model.num_parameters():,}",
        config=config,
        cell=config.rnn_type.upper(),
        attention=ATTENTION_IN_WORDS[config.attention_type],
        additive_attention_types=ADDITIVE_ATTENTION_TYPES,
        architecture=architecture_in_words(config),
        base_model=model_args.model_name_or_path,
        tokenizer_source=model_args.tokenizer_name or model_args.model_name_or_path,  # as training.get_tokenizer
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
