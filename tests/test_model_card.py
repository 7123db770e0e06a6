"""The model card train.py writes: Hub metadata with the scores of every split, and the facts a user needs."""

import tomllib

from huggingface_hub import ModelCard
from packaging.requirements import Requirement
from huggingface_hub.repocard_data import model_index_to_eval_results

from hf_rnn_seq2seq.arguments import DEFAULT_MODEL_CARD_TEMPLATE, DataTrainingArguments, ModelArguments
from hf_rnn_seq2seq.data import DEFAULT_HUB_DATASET
from hf_rnn_seq2seq.publishing import write_model_card
from helpers import PYPROJECT, compat_releases, tiny_model

BLEU_SIGNATURE = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
CHRF_SIGNATURE = "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"
RESULTS = {
    "eval": {"eval_bleu": 40.123, "eval_chrf": 60.456},
    "test": {
        "bleu": 41.987, "chrf": 61.004, "bleu_signature": BLEU_SIGNATURE, "chrf_signature": CHRF_SIGNATURE,
        "length_ratio": 0.998, "num_samples": 1000, "num_beams": 5, "sentences_per_second": 120.5,
    },  # fmt: skip
    "examples": [{"source": "Ein Hund rennt.", "reference": "A dog runs.", "translation": "A dog is running."}],
}


def written_card(tmp_path, attention_type="luong_general", results=RESULTS) -> tuple[ModelCard, object]:
    model = tiny_model(attention_type)
    write_model_card(
        tmp_path, DEFAULT_MODEL_CARD_TEMPLATE, model, ModelArguments(), DataTrainingArguments(), results,
        ["--num_train_epochs", "3"], repo_id="someone/gru-de-en",
    )  # fmt: skip
    return ModelCard.load(tmp_path / "README.md"), model


def test_metadata_carries_the_scores_of_every_split_with_their_signatures(tmp_path):
    card, _ = written_card(tmp_path)
    scores = {(r.dataset_split, r.metric_type): (r.metric_value, r.metric_config) for r in card.data.eval_results}
    assert scores == {
        ("validation", "bleu"): (40.12, BLEU_SIGNATURE),
        ("validation", "chrf"): (60.46, CHRF_SIGNATURE),
        ("test", "bleu"): (41.99, BLEU_SIGNATURE),
        ("test", "chrf"): (61.0, CHRF_SIGNATURE),
    }
    assert {r.task_type for r in card.data.eval_results} == {"translation"}


def test_metadata_is_what_the_hub_reads(tmp_path):
    card, _ = written_card(tmp_path)
    metadata = card.data.to_dict()
    assert metadata["language"] == ["de", "en"]
    assert metadata["license"] == "apache-2.0"
    assert metadata["datasets"] == [DEFAULT_HUB_DATASET]  # the default corpus names its Hub dataset
    assert metadata["pipeline_tag"] == "translation" and metadata["library_name"] == "transformers"
    assert set(metadata["metrics"]) == {"bleu", "chrf"}
    # The Hub renders results from model-index: it must convert back into the same results.
    model_name, results = model_index_to_eval_results(metadata["model-index"])
    assert model_name == card.data.model_name
    assert [(r.dataset_split, r.metric_type, r.metric_value) for r in results] == [
        (r.dataset_split, r.metric_type, r.metric_value) for r in card.data.eval_results
    ]


def test_text_states_size_command_usage_and_limitations(tmp_path):
    card, model = written_card(tmp_path)
    assert f"| parameters | {model.num_parameters():,} |" in card.text
    assert "python train.py --num_train_epochs 3" in card.text
    assert 'AutoModelForSeq2SeqLM.from_pretrained("someone/gru-de-en", trust_remote_code=True)' in card.text
    assert "Exposure bias" in card.text and "quality still falls with sentence length" in card.text
    assert "BLEU `" + BLEU_SIGNATURE + "`" in card.text


def test_text_states_the_tested_transformers_versions(tmp_path):
    """The range the model code is tested with (the compat matrix's ends) and the package's declared requirement."""
    card, _ = written_card(tmp_path)
    oldest, newest = compat_releases()[0]["transformers"], compat_releases()[-1]["transformers"]
    assert f"tested with transformers {oldest} to\n{newest}" in card.text
    requirement = next(line for line in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
                       if line.startswith("transformers"))
    assert f"requires\n{Requirement(requirement)}." in card.text


def test_a_model_without_attention_names_the_fixed_context_bottleneck(tmp_path):
    card, _ = written_card(tmp_path, "none")
    assert "information bottleneck" in card.text and "fixed context vector" in card.text


def test_a_run_without_evaluation_has_no_model_index(tmp_path):
    card, _ = written_card(tmp_path, results={})
    assert not card.data.eval_results and "No test-set evaluation was run." in card.text
