"""The model card train.py writes: Hub metadata with the scores of every split, and the facts a user needs."""

import re
import tomllib

from huggingface_hub import ModelCard
from packaging.requirements import Requirement
from huggingface_hub.repocard_data import model_index_to_eval_results

from hf_rnn_seq2seq import ATTENTION_TYPES
from hf_rnn_seq2seq.arguments import DEFAULT_MODEL_CARD_TEMPLATE, DataTrainingArguments, ModelArguments
from hf_rnn_seq2seq.corpus import DEFAULT_HUB_DATASET
from hf_rnn_seq2seq.publishing import ATTENTION_IN_WORDS, write_model_card
from helpers import PYPROJECT, REPO_ROOT, compat_releases, tiny_model

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


def written_card(tmp_path, attention_type="luong_general", results=RESULTS, model_args=None,
                 **config) -> tuple[ModelCard, object]:  # fmt: skip
    model = tiny_model(attention_type, **config)
    write_model_card(
        tmp_path, DEFAULT_MODEL_CARD_TEMPLATE, model, model_args or ModelArguments(), DataTrainingArguments(),
        results, ["--num_train_epochs", "3"], repo_id="someone/gru-de-en",
    )  # fmt: skip
    return ModelCard.load(tmp_path / "README.md"), model


def title(card: ModelCard) -> str:
    return next(line for line in card.text.splitlines() if line.startswith("# "))


def model_table(card: ModelCard) -> dict[str, str]:
    """The rows of the card's "## Model" table: {what: value}."""
    section = card.text.split("## Model\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return {what.strip(): value.strip() for what, value in rows}


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


def test_an_lstm_bahdanau_models_card_says_lstm_and_bahdanau_and_never_gru(tmp_path):
    card, model = written_card(tmp_path, "bahdanau", input_feeding=True, rnn_type="lstm", attention_hidden_size=20)
    table = model_table(card)
    assert title(card).endswith("LSTM translation model")
    assert table["encoder"] == "2 × bidirectional LSTM, 16 per direction"
    assert table["decoder"] == "2 × LSTM, 16"
    assert "Bahdanau" in table["attention"] and "scorer width 20" in table["attention"]
    assert table["input feeding"].startswith("yes")
    assert table["parameters"] == f"{model.num_parameters():,}" and table["vocabulary"].startswith("40 tokens")
    assert "GRU" not in card.text and "gru" not in card.data.tags
    assert "lstm" in card.data.tags and "Long Short-Term Memory" in card.text  # the LSTM's paper among the references


def test_a_gru_luong_models_card_says_gru_and_luong(tmp_path):
    card, _ = written_card(tmp_path, "luong_dot")
    table = model_table(card)
    assert title(card).endswith("GRU translation model")
    assert table["encoder"] == "2 × bidirectional GRU, 8 per direction" and table["decoder"] == "2 × GRU, 16"
    assert "Luong" in table["attention"] and "dot" in table["attention"] and "Bahdanau" not in table["attention"]
    assert "scorer width" not in table["attention"] and table["input feeding"] == "no"  # no hidden layer to size
    assert "LSTM" not in card.text and "lstm" not in card.data.tags and "gru" in card.data.tags


def test_every_attention_type_has_its_words():
    assert set(ATTENTION_IN_WORDS) == set(ATTENTION_TYPES)


def test_a_fine_tuned_models_card_names_its_base(tmp_path):
    card, _ = written_card(tmp_path / "hub", model_args=ModelArguments(model_name_or_path="someone/base-gru-de-en"))
    assert "fine-tuned from `someone/base-gru-de-en`" in " ".join(card.text.split())
    assert "from scratch" not in card.text and "tokenizer is `someone/base-gru-de-en`'s" in " ".join(card.text.split())
    assert card.data.base_model == "someone/base-gru-de-en"
    # A local folder is named in the text; the Hub metadata's base_model takes only a model id.
    base = tmp_path / "runs" / "base"
    base.mkdir(parents=True)
    card, _ = written_card(tmp_path / "local", model_args=ModelArguments(model_name_or_path=str(base)))
    assert f"fine-tuned from `{base}`" in " ".join(card.text.split()) and card.data.base_model is None


def test_a_model_trained_from_scratch_says_so(tmp_path):
    card, _ = written_card(tmp_path)
    assert "trained from scratch" in " ".join(card.text.split()) and "fine-tuned" not in card.text
    assert card.data.base_model is None


# --------------------------------------------------------------------------- nothing of this repository's own runs

# A decimal number on its own (not part of a version such as 2.6.0 or of an address).
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")
MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
DATE = re.compile(rf"\b(?:19|20)\d\d\b|\b\d{{4}}-\d\d-\d\d\b|\b(?:{MONTHS})\b")


def benchmark_figures() -> set[str]:
    """The figures of this repository's results tables (benchmarks/results/*.md): their decimal numbers, but those
    with one digit either side of the point (0.1, 2.3), which a card states as settings of its own model."""
    figures = set()
    for table in (REPO_ROOT / "benchmarks" / "results").glob("*.md"):
        for row in table.read_text(encoding="utf-8").splitlines():
            if row.startswith("|"):
                figures |= {figure for figure in DECIMAL.findall(row) if not re.fullmatch(r"\d\.\d", figure)}
    return figures


def test_the_template_carries_no_date_and_no_figure_of_its_own():
    """Every number in a user's card comes from their model and run: the template's own text (without the Jinja
    expressions that fill those in, and the papers' addresses) has no date and no decimal number at all."""
    text = DEFAULT_MODEL_CARD_TEMPLATE.read_text(encoding="utf-8")
    static = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|https?://\S+", " ", text, flags=re.S)
    assert not DATE.findall(static)
    assert not DECIMAL.findall(static)
    assert len(benchmark_figures()) > 50  # the tables were read
    assert not set(DECIMAL.findall(text)) & benchmark_figures()


def test_a_rendered_card_carries_no_date_and_no_benchmark_figure(tmp_path):
    """A fine-tuned LSTM with every section filled in. (Should the tables ever hold one of the scores below, change
    the score here: the card shows what it is given.)"""
    results = {
        "train": {"train_samples": 321, "world_size": 1, "epoch": 3.0, "train_runtime": 45.6},
        "eval": {"eval_bleu": 11.111, "eval_chrf": 33.333},
        "test": {**RESULTS["test"], "bleu": 12.345, "chrf": 34.567, "length_ratio": 0.8765,
                 "sentences_per_second": 77.7},
        "examples": RESULTS["examples"],
    }  # fmt: skip
    model_args = ModelArguments(model_name_or_path="someone/base-lstm-de-en")
    card, _ = written_card(tmp_path, "bahdanau", results=results, model_args=model_args, rnn_type="lstm")
    assert "| BLEU | 12.35 |" in card.text and "Validation split: BLEU 11.11" in card.text  # the sections are there
    assert not DATE.findall(card.content)
    repeated = set(DECIMAL.findall(card.content)) & benchmark_figures()
    assert not repeated, f"this repository's benchmark figures in a user's card: {repeated}"
