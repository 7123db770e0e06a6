"""JoeyNMT import: small JoeyNMT models trained here by JoeyNMT itself (in its own environment, .cache/joeynmt-venv,
which .ci/run makes) on the real data slice, converted, and compared with JoeyNMT's own segmentation, logits and
translations."""

import ast
import json
from pathlib import Path

import pytest
import torch
import yaml
from helpers import JOEYNMT_PYTHON, REPO_ROOT, call_script, run
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from hf_rnn_seq2seq.joeynmt import JoeyNMTImportError, import_joeynmt, main

WORKER = REPO_ROOT / "tests" / "joeynmt_worker.py"
MAX_OUTPUT_LENGTH = 20
# Every value of each dimension the importer maps: cell, attention, input feeding, depth, segmentation, and tied
# (one table, output layer tied) against separate vocabularies.
VARIANTS = {
    "gru-bahdanau-feeding-1layer-word-tied": dict(rnn_type="gru", attention="bahdanau", input_feeding=True,
                                                  num_layers=1, level="word", tied=True),
    "gru-luong-2layers-subword_nmt": dict(rnn_type="gru", attention="luong", input_feeding=False, num_layers=2,
                                          level="subword-nmt", tied=False),
    "lstm-bahdanau-2layers-sentencepiece": dict(rnn_type="lstm", attention="bahdanau", input_feeding=False,
                                                num_layers=2, level="sentencepiece", tied=False),
    "lstm-luong-feeding-1layer-word": dict(rnn_type="lstm", attention="luong", input_feeding=True, num_layers=1,
                                           level="word", tied=False),
}  # fmt: skip


def joeynmt_config(name, variant, data_dir: Path, work: Path) -> dict:
    size = 24
    side = {"level": "word", "lowercase": False, "voc_min_freq": 1, "max_length": 60}
    if variant["level"] == "subword-nmt":
        # A vocabulary of every piece the codes can produce: with pieces missing, subword-nmt splits such a piece
        # back into smaller ones, which a `tokenizers` BPE cannot do (the importer says so; README).
        side.update(level="bpe", tokenizer_type="subword-nmt", tokenizer_cfg={"codes": str(work / "bpe.codes")},
                    voc_file=str(work / "bpe_vocab.txt"))
    elif variant["level"] == "sentencepiece":
        side.update(level="bpe", tokenizer_type="sentencepiece", tokenizer_cfg={"model_file": str(work / "spm.model")})
    if variant["tied"]:
        side["voc_file"] = str(work / "joint_vocab.txt")
    rnn = {"type": "recurrent", "rnn_type": variant["rnn_type"], "embeddings": {"embedding_dim": size if
           variant["tied"] else 16}, "hidden_size": size, "num_layers": variant["num_layers"], "dropout": 0.1}  # fmt: skip
    return {
        "name": name,
        "joeynmt_version": "2.3.0",
        "data": {
            "train": str(data_dir / "train"), "dev": str(data_dir / "val"), "test": str(data_dir / "test_2016_flickr"),
            "dataset_type": "plain", "src": {"lang": "de", **side}, "trg": {"lang": "en", **side},
        },
        "testing": {"beam_size": 1, "beam_alpha": 0, "batch_size": 8, "max_output_length": MAX_OUTPUT_LENGTH,
                    "eval_metrics": ["bleu"]},
        "training": {
            "random_seed": 42, "optimizer": "adam", "learning_rate": 0.005, "batch_size": 25, "batch_type": "sentence",
            "updates": 24, "epochs": 100, "validation_freq": 24, "logging_freq": 12, "eval_metric": ["bleu"],
            "early_stopping_metric": "loss", "model_dir": str(work / name), "overwrite": True, "use_cuda": False,
            "print_valid_sents": [], "keep_best_ckpts": 1, "scheduling": "exponential", "decrease_factor": 1.0,
        },
        "model": {
            "initializer": "xavier_uniform", "embed_initializer": "normal", "embed_init_weight": 0.1,
            "bias_initializer": "zeros", "tied_embeddings": variant["tied"], "tied_softmax": variant["tied"],
            "encoder": {**rnn, "bidirectional": True},
            "decoder": {**rnn, "attention": variant["attention"], "input_feeding": variant["input_feeding"],
                        "init_hidden": "bridge", "hidden_dropout": 0.1},
        },
    }  # fmt: skip


@pytest.fixture(scope="module")
def joeynmt_models(multi30k_slice, tmp_path_factory):
    """The four variants trained, decoded and scored by JoeyNMT (one worker process), then imported."""
    if not JOEYNMT_PYTHON.exists():
        pytest.fail(f"JoeyNMT's environment is missing ({JOEYNMT_PYTHON}); .ci/run makes it")
    data_dir = multi30k_slice(train=300, validation=8, test=24)
    work = tmp_path_factory.mktemp("joeynmt")
    train_text = [
        line for lang in ("de", "en") for line in (data_dir / f"train.{lang}").read_text(encoding="utf-8").splitlines()
    ]
    (work / "train.both").write_text("\n".join(train_text) + "\n", encoding="utf-8")
    words = sorted({word for line in train_text for word in line.split(" ")})
    (work / "joint_vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    configs = []
    for name, variant in VARIANTS.items():
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(joeynmt_config(name, variant, data_dir, work)), encoding="utf-8")
        configs.append(path)
    test_pairs = list(zip(*((data_dir / f"test_2016_flickr.{lang}").read_text(encoding="utf-8").splitlines()
                            for lang in ("de", "en"))))  # fmt: skip
    job = {
        "configs": [str(path) for path in configs], "pairs": test_pairs[:12],
        "subword_nmt": {"input": str(work / "train.both"), "codes": str(work / "bpe.codes"), "merges": 300,
                        "vocabulary": str(work / "bpe_vocab.txt")},
        "sentencepiece": {"input": str(work / "train.both"), "prefix": str(work / "spm"), "vocab_size": 300},
    }  # fmt: skip
    (work / "job.json").write_text(json.dumps(job), encoding="utf-8")
    run([str(JOEYNMT_PYTHON), str(WORKER), str(work / "job.json")], cwd=work, timeout=900)
    models = {}
    for name, path in zip(VARIANTS, configs):
        model_dir = work / name
        folder = import_joeynmt(path, model_dir / "best.ckpt", work / f"imported-{name}")
        models[name] = {
            "config": path,
            "folder": folder,
            "model_dir": model_dir,
            "test_sources": [source for source, _ in test_pairs],
            "joeynmt": torch.load(model_dir / "logits.pt", weights_only=True),
        }
    return models


def joey_tokens(tokens: list[str], level: str) -> list[str]:
    """Our tokens as JoeyNMT writes them: subword-nmt pieces but a word's last carry "@@"; ours mark the last "</w>"."""
    if level != "subword-nmt":
        return tokens
    return [t[: -len("</w>")] if t.endswith("</w>") else t if t.startswith("<") and t.endswith(">") else t + "@@"
            for t in tokens]  # fmt: skip


def load(folder):
    return AutoModelForSeq2SeqLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_imported_model_segments_like_joeynmt_and_computes_its_logits(joeynmt_models, name):
    imported = joeynmt_models[name]
    model, tokenizer = load(imported["folder"])
    joey = imported["joeynmt"]
    sources = [source for source, _ in joey["pairs"]]
    batch = tokenizer(sources, return_tensors="pt", padding=True)
    ours = [tokenizer.convert_ids_to_tokens(ids[mask.bool()]) for ids, mask in zip(batch.input_ids,
                                                                                       batch.attention_mask)]  # fmt: skip
    # What the encoder reads: each token, or <unk> where JoeyNMT's source vocabulary lacks it.
    vocabulary = set((imported["model_dir"] / "src_vocab.txt").read_text(encoding="utf-8").splitlines())

    def as_read(tokens):
        return [token if token in vocabulary else "<unk>" for token in tokens]

    assert [as_read(joey_tokens(tokens[:-1], VARIANTS[name]["level"])) for tokens in ours] == [
        as_read(tokens) for tokens in joey["source_tokens"]
    ]
    with torch.no_grad():
        logits = model(**batch, decoder_input_ids=joey["decoder_input_ids"]).logits
    expected = joey["logits"]
    assert logits.shape == expected.shape
    for row, target in enumerate(joey["target_ids"]):
        torch.testing.assert_close(logits[row, : len(target)], expected[row, : len(target)], atol=1e-5, rtol=0)


def _joeynmt_hypotheses(model_dir: Path, name: str) -> list[list[str]]:
    lines = (model_dir / f"{name}.test.tokens").read_text(encoding="utf-8").splitlines()
    return [ast.literal_eval(line) for line in lines]


def _our_hypotheses(imported, level, **generate_kwargs) -> list[list[str]]:
    model, tokenizer = load(imported["folder"])
    hypotheses = []
    for start in range(0, len(imported["test_sources"]), 8):
        batch = tokenizer(imported["test_sources"][start : start + 8], return_tensors="pt", padding=True)
        with torch.no_grad():
            output = model.generate(**batch, **generate_kwargs)
        eos = model.generation_config.eos_token_id  # JoeyNMT's </s>, id 3
        for row in output.tolist():
            row = row[1:]  # after the start token
            row = row[: row.index(eos) + 1] if eos in row else row  # JoeyNMT's hypotheses end at their </s>
            hypotheses.append(joey_tokens(tokenizer.convert_ids_to_tokens(row), level))
    return hypotheses


@pytest.mark.parametrize("name", list(VARIANTS))
def test_greedy_translations_equal_joeynmt_test_outputs(joeynmt_models, name):
    imported = joeynmt_models[name]
    ours = _our_hypotheses(imported, VARIANTS[name]["level"])
    assert ours == _joeynmt_hypotheses(imported["model_dir"], "greedy")


def test_beam_search_agrees_with_joeynmt_on_99_percent(joeynmt_models):
    equal = total = 0
    for name, imported in joeynmt_models.items():
        ours = _our_hypotheses(imported, VARIANTS[name]["level"], num_beams=5, length_penalty=0.0)
        theirs = _joeynmt_hypotheses(imported["model_dir"], "beam")
        equal += sum(a == b for a, b in zip(ours, theirs, strict=True))
        total += len(theirs)
    assert equal / total >= 0.99, f"{equal} of {total} beam-5 translations equal JoeyNMT's"


def test_a_transformer_model_is_refused_naming_the_option(tmp_path):
    config = joeynmt_config("refused", VARIANTS["lstm-luong-feeding-1layer-word"], tmp_path, tmp_path)
    config["model"]["encoder"]["type"] = "transformer"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(JoeyNMTImportError, match=r"model\.encoder\.type: 'transformer' is not supported"):
        import_joeynmt(tmp_path / "config.yaml", tmp_path / "best.ckpt", tmp_path / "out")


@pytest.mark.parametrize(
    "section, option, value",
    [("decoder", "init_hidden", "zero"), ("decoder", "frobnicate", 1), ("encoder", "activation", "relu")],
)
def test_an_unsupported_option_is_refused_naming_it(tmp_path, section, option, value):
    config = joeynmt_config("refused", VARIANTS["lstm-luong-feeding-1layer-word"], tmp_path, tmp_path)
    config["model"][section][option] = value
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(JoeyNMTImportError, match=rf"model\.{section}(\.{option}|: option\(s\) {option})"):
        import_joeynmt(tmp_path / "config.yaml", tmp_path / "best.ckpt", tmp_path / "out")


def test_a_pickle_that_is_not_plain_tensors_is_refused(joeynmt_models, tmp_path):
    """A checkpoint whose pickle would run code is never unpickled: torch.load(weights_only=True) refuses it."""
    imported = joeynmt_models["lstm-luong-feeding-1layer-word"]
    checkpoint = tmp_path / "best.ckpt"
    torch.save({"model_state": {}, "hook": Path("x")}, checkpoint)  # a class outside the weights-only allowlist
    for vocabulary in ("src_vocab.txt", "trg_vocab.txt"):
        (tmp_path / vocabulary).write_bytes((imported["model_dir"] / vocabulary).read_bytes())
    with pytest.raises(JoeyNMTImportError, match="weights_only=True"):
        import_joeynmt(imported["config"], checkpoint, tmp_path / "out")


def test_a_target_id_outside_the_target_vocabulary_is_refused(joeynmt_models):
    """With separate vocabularies, ids from vocab_size up are source-only tokens: the decoder has no row for them."""
    model, tokenizer = load(joeynmt_models["lstm-luong-feeding-1layer-word"]["folder"])
    assert model.config.source_vocab_size == len(tokenizer) > model.config.vocab_size
    batch = tokenizer(["Ein Mann"], return_tensors="pt")
    with pytest.raises(ValueError, match="source vocabulary only"):
        model(**batch, labels=torch.tensor([[model.config.vocab_size, 3]]))


def test_subword_nmt_pieces_outside_the_vocabulary_are_counted(joeynmt_models):
    """subword-nmt splits a piece missing from the vocabulary back into smaller ones; the tokenizer cannot, so the
    importer counts those pieces (and says so in its log and the model card)."""
    from hf_rnn_seq2seq.joeynmt.segmentation import build_tokenizer
    from hf_rnn_seq2seq.joeynmt.settings import read_settings

    imported = joeynmt_models["gru-luong-2layers-subword_nmt"]
    settings = read_settings(imported["config"])
    vocabulary = (imported["model_dir"] / "src_vocab.txt").read_text(encoding="utf-8").splitlines()
    dropped = [token for token in vocabulary if token.endswith("@@") and len(token) > 4][:3]
    reduced = [token for token in vocabulary if token not in dropped]
    converted = build_tokenizer(settings.segmentation, reduced, reduced, settings.specials)
    assert converted.pieces_outside_vocabulary == len(dropped) == 3
    assert build_tokenizer(settings.segmentation, vocabulary, vocabulary, settings.specials).pieces_outside_vocabulary == 0


def test_each_imported_models_card_names_its_cell_attention_and_input_feeding(joeynmt_models):
    from huggingface_hub import ModelCard

    for name, imported in joeynmt_models.items():
        variant = VARIANTS[name]
        card = ModelCard.load(imported["folder"] / "README.md")
        cell, other = ("LSTM", "GRU") if variant["rnn_type"] == "lstm" else ("GRU", "LSTM")
        assert f"{cell} encoder–decoder with " in card.text, name
        assert f"(the attention JoeyNMT calls \"{variant['attention']}\")" in card.text, name
        assert ("and input feeding" in card.text) == variant["input_feeding"], name
        assert other not in card.text and variant["rnn_type"] in card.data.tags and "joeynmt" in card.data.tags, name


def test_the_console_script_writes_a_complete_folder_and_reports_a_refusal(joeynmt_models, tmp_path, monkeypatch,
                                                                           capsys):
    imported = joeynmt_models["gru-luong-2layers-subword_nmt"]
    out = tmp_path / "cli"
    status, _, err = call_script(main, imported["config"], imported["model_dir"] / "best.ckpt", out,
                                 monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert status == 0, err
    files = {path.name for path in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "README.md",
            "modeling_rnn_seq2seq.py", "configuration_rnn_seq2seq.py"} <= files  # fmt: skip
    card = (out / "README.md").read_text(encoding="utf-8")
    assert imported["config"].name in card and "best.ckpt" in card and "joeynmt" in card
    generation = json.loads((out / "generation_config.json").read_text())
    assert (generation["max_new_tokens"], generation["suppress_tokens"], generation["decoder_start_token_id"]) == (
        MAX_OUTPUT_LENGTH, [2, 1], 2
    )
    assert generation["begin_suppress_tokens"] == [3]  # JoeyNMT's min_output_length 1: no </s> at the first step
    status, _, err = call_script(main, imported["config"], tmp_path / "missing.ckpt", tmp_path / "none",
                                 monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert status == 2 and "missing.ckpt not found" in err


def test_heatmap_labels_read_as_words_with_subword_nmt_pieces(joeynmt_models):
    """The attention plot's labels hide subword-nmt's "</w>" as they hide "▁", and mark continued words "##"."""
    from hf_rnn_seq2seq.tokenization import reader_tokens

    _, tokenizer = load(joeynmt_models["gru-luong-2layers-subword_nmt"]["folder"])
    sentence = joeynmt_models["gru-luong-2layers-subword_nmt"]["test_sources"][2]
    ids = tokenizer(sentence)["input_ids"]
    # Without the special tokens (</s>, and <unk> for characters the codes never saw), which decoding skips.
    labels = [label for label in reader_tokens(tokenizer, tokenizer.convert_ids_to_tokens(ids))
              if label not in tokenizer.all_special_tokens]  # fmt: skip
    assert not any("</w>" in label or "@@" in label for label in labels)
    assert any(label.startswith("##") for label in labels)
    words = []
    for label in labels:
        words[-1:] = [words[-1] + label[2:]] if label.startswith("##") else [*words[-1:], label]
    assert " ".join(words) == tokenizer.decode(ids, skip_special_tokens=True)
