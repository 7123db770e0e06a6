"""eole import: small eole 0.6.4 recurrent models trained here by eole itself (in its own environment,
.cache/eole-venv, which .ci/run makes) on the real data slice, converted, and compared with eole's own teacher-forced
logits and `eole predict` output (tests/eole_worker.py).

eole's RNN encoder runs over the padding of a batch (it does not pack), so its results for a sentence depend on the
batch it shares; it is compared one sentence a batch, where its encoder sees no padding, and ours computes the same
for any batch."""

import json

import numpy
import pytest
import torch
from helpers import REPO_ROOT, run
from test_opennmt_import import load, single_spaced_texts, write_training_data

from hf_rnn_seq2seq.opennmt import OpenNMTImportError, import_opennmt

EOLE_PYTHON = REPO_ROOT / ".cache" / "eole-venv" / "bin" / "python"
WORKER = REPO_ROOT / "tests" / "eole_worker.py"
MAX_LENGTH = 100  # the worker's `eole predict -max_length` (and -max_length_ratio 0)
# eole's `architecture: rnn` (a unidirectional encoder; LSTM, general attention, input feeding and the sinusoidal
# position encoding by default) with each option the importer maps, and a bidirectional GRU (`architecture: custom`).
VARIANTS = {
    "lstm-general": {},
    "gru-dot": {"model": {"rnn_type": "GRU", "decoder": {"global_attention": "dot"}}},
    "lstm-mlp": {"model": {"decoder": {"global_attention": "mlp"}}},
    "lstm-no_input_feed-no_positions": {"model": {"input_feed": 0, "embeddings": {"position_encoding_type": None}}},
    "lstm-2layers-bridge": {"model": {"layers": 2, "bridge": True}},
    "gru-brnn": {"model": {"architecture": "custom", "encoder": {"encoder_type": "brnn", "rnn_type": "GRU"},
                           "decoder": {"decoder_type": "rnn", "rnn_type": "GRU"}}},
    "lstm-shared-no_generator_bias": {"share_vocab": True, "model": {
        "share_embeddings": True, "share_decoder_embeddings": True, "generator_bias": False,
        "embeddings": {"word_vec_size": 32}}},
}  # fmt: skip


@pytest.fixture(scope="module")
def eole_models(multi30k_slice, tmp_path_factory):
    """The variants trained, decoded and scored by eole (one worker process, which runs eole's commands), then
    imported."""
    if not EOLE_PYTHON.exists():
        pytest.fail(f"eole's environment is missing ({EOLE_PYTHON}); .ci/run makes it")
    texts = single_spaced_texts(multi30k_slice(train=500, validation=8, test=40))
    work = tmp_path_factory.mktemp("eole")
    for name in VARIANTS:
        write_training_data(work / name, texts)
    sources, targets = texts["test_2016_flickr", "de"].splitlines(), texts["test_2016_flickr", "en"].splitlines()
    (work / "test.src").write_text("\n".join(sources) + "\n", encoding="utf-8")
    job = {
        "models": [{"workdir": str(work / name), "options": options} for name, options in VARIANTS.items()],
        "test_src": str(work / "test.src"), "pairs": [list(pair) for pair in zip(sources[:6], targets[:6])],
    }  # fmt: skip
    (work / "job.json").write_text(json.dumps(job), encoding="utf-8")
    run([str(EOLE_PYTHON), str(WORKER), "job", str(work / "job.json")], cwd=work, timeout=1200)
    return {
        name: {"folder": import_opennmt(work / name / "model", work / f"imported-{name}"), "workdir": work / name,
               "sources": sources, "pairs": job["pairs"]}
        for name in VARIANTS
    }  # fmt: skip


@pytest.mark.parametrize("name", list(VARIANTS))
def test_imported_model_reads_eoles_tokens_and_computes_its_logits(eole_models, name):
    imported = eole_models[name]
    model, tokenizer = load(imported["folder"])
    vocabulary = json.loads((imported["workdir"] / "model" / "vocab.json").read_text())["src"]
    for number, (source, _) in enumerate(imported["pairs"]):
        theirs = json.loads((imported["workdir"] / f"pair_{number}.json").read_text())
        batch = tokenizer([source], return_tensors="pt")
        ours = [token if token in vocabulary else "<unk>" for token in tokenizer.convert_ids_to_tokens(batch.input_ids[0])]
        assert ours == [vocabulary[i] for i in theirs["src"][0]]
        with torch.no_grad():
            logits = model(**batch, decoder_input_ids=torch.tensor(theirs["tgt"])).logits
        expected = torch.from_numpy(numpy.load(imported["workdir"] / f"pair_{number}.npy", allow_pickle=False))
        # 5e-5: float32 rounding alone moves the bidirectional GRU's logits 1.5e-5 from their float64 values (both
        # ours and eole's, measured); a wrong weight or step moves them by 1e-2 and more.
        torch.testing.assert_close(logits, expected, atol=5e-5, rtol=0)


def _our_translations(imported, batch_size=16, **generate_kwargs) -> list[str]:
    """As `eole predict` writes them: the tokens before </s>, joined by spaces; a padded batch (see the module
    docstring)."""
    model, tokenizer = load(imported["folder"])
    translations = []
    for start in range(0, len(imported["sources"]), batch_size):
        batch = tokenizer(imported["sources"][start : start + batch_size], return_tensors="pt", padding=True)
        with torch.no_grad():
            output = model.generate(**batch, max_new_tokens=MAX_LENGTH, **generate_kwargs)
        for row in output.tolist():
            row = row[1:]
            row = row[: row.index(model.config.eos_token_id)] if model.config.eos_token_id in row else row
            translations.append(" ".join(tokenizer.convert_ids_to_tokens(row)))
    return translations


def _eole_translations(imported, mode: str) -> list[str]:
    return (imported["workdir"] / f"{mode}.txt").read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_greedy_translations_equal_eole_predict(eole_models, name):
    imported = eole_models[name]
    assert _our_translations(imported, num_beams=1) == _eole_translations(imported, "greedy")


def test_beam_search_agrees_with_eole_predict_on_99_percent(eole_models):
    equal = total = 0
    differing = []
    for name, imported in eole_models.items():
        ours = _our_translations(imported, num_beams=5, length_penalty=0.0)
        theirs = _eole_translations(imported, "beam")
        equal += sum(a == b for a, b in zip(ours, theirs, strict=True))
        total += len(theirs)
        differing += [(name, a, b) for a, b in zip(ours, theirs) if a != b]
    assert equal / total >= 0.99, f"{equal} of {total} beam-5 translations equal eole predict's: {differing}"


@pytest.mark.parametrize(
    "change, reason",
    [({"architecture": "transformer"}, "model.architecture='transformer' is not supported"),
     ({"decoder": {"coverage_attn": True}}, "coverage_attn=True is not supported"),
     ({"embeddings": {"position_encoding_type": "Learned"}}, "position_encoding_type='Learned' is not supported")],
)  # fmt: skip
def test_an_option_the_importer_cannot_represent_is_refused_naming_it(eole_models, tmp_path, change, reason):
    """A trained folder whose config.json is changed to ask for what the model cannot compute."""
    folder = tmp_path / "model"
    folder.mkdir()
    original = eole_models["lstm-general"]["workdir"] / "model"
    for name in ("vocab.json", "model.00.safetensors"):
        (folder / name).write_bytes((original / name).read_bytes())
    config = json.loads((original / "config.json").read_text())
    for key, value in change.items():
        config["model"][key] = {**config["model"].get(key, {}), **value} if isinstance(value, dict) else value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(OpenNMTImportError, match=reason):
        import_opennmt(folder, tmp_path / "out")
