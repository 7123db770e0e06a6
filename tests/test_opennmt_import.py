"""OpenNMT-py import: small OpenNMT-py 3.5.1 models trained here by OpenNMT-py itself (in its own environment,
.cache/opennmt-venv, which .ci/run makes) on the real data slice, converted, and compared with OpenNMT's own
segmentation, teacher-forced logits and `onmt_translate` output (tests/opennmt_worker.py)."""

import argparse
import json
import sys
import types
from pathlib import Path

import numpy
import pytest
import torch
from helpers import REPO_ROOT, call_script, run
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from hf_rnn_seq2seq.opennmt import OpenNMTImportError, import_opennmt, main
from hf_rnn_seq2seq.opennmt.checkpoint import read_checkpoint

OPENNMT_PYTHON = REPO_ROOT / ".cache" / "opennmt-venv" / "bin" / "python"
WORKER = REPO_ROOT / "tests" / "opennmt_worker.py"
MAX_LENGTH = 100  # the worker's onmt_translate -max_length (and -max_length_ratio 0)
SUBWORD_MODELS = {"sentencepiece": "spm.model", "bpe": "bpe.codes"}  # trained by the worker, in the job's folder
# The configurations and two more: OpenNMT's default RNN (LSTM, brnn, general attention, input feeding),
# GRU + dot, mlp, StdRNNDecoder, the ReLU bridge (with sentencepiece), two layers (with
# subword-nmt BPE), one table for source, target and output layer; and a unidirectional two-layer GRU whose bridge
# mixes the layers.
VARIANTS = {
    "lstm-brnn-general": {"encoder_type": "brnn"},
    "gru-brnn-dot": {"encoder_type": "brnn", "rnn_type": "GRU", "global_attention": "dot"},
    "lstm-brnn-mlp": {"encoder_type": "brnn", "global_attention": "mlp"},
    "lstm-brnn-no_input_feed": {"encoder_type": "brnn", "input_feed": 0},
    "lstm-brnn-bridge-sentencepiece": {"encoder_type": "brnn", "bridge": True, "transforms": ["sentencepiece"]},
    "lstm-brnn-2layers-bpe": {"encoder_type": "brnn", "layers": 2, "transforms": ["bpe"]},
    "lstm-brnn-shared_embeddings": {"encoder_type": "brnn", "share_vocab": True, "share_embeddings": True,
                                    "share_decoder_embeddings": True, "word_vec_size": 32},
    "gru-rnn-2layers-bridge-mlp": {"encoder_type": "rnn", "rnn_type": "GRU", "layers": 2, "bridge": True,
                                   "global_attention": "mlp"},
}  # fmt: skip
# OpenNMT's default again, its weights saved by `save_format: safetensors` beside the .pt (trained only: OpenNMT-py
# 3.5.1's own loader looks for MODEL.*.safetensors, not the MODEL.safetensors its saver writes).
SAFETENSORS = {"lstm-brnn-general-safetensors": {"encoder_type": "brnn", "save_format": "safetensors"}}
# Trained for a few steps only, to be refused.
REFUSED = {
    "transformer": {"encoder_type": "transformer", "decoder_type": "transformer", "word_vec_size": 32, "heads": 2,
                    "transformer_ff": 64, "position_encoding": True, "train_steps": 4},
    "copy_attention": {"encoder_type": "brnn", "copy_attn": True, "train_steps": 4},
    "position_encoding": {"encoder_type": "brnn", "position_encoding": True, "train_steps": 4},
}  # fmt: skip


def single_spaced_texts(data_dir: Path) -> dict[tuple[str, str], str]:
    """(split, lang) -> the slice's text with single spaces between words: OpenNMT and eole split at each space
    (str.split(" ")), so two spaces would make an empty token, which onmt_train cannot read back from the vocabulary
    it writes."""
    return {(split, lang): "".join(" ".join(line.split()) + "\n" for line in
                                   (data_dir / f"{split}.{lang}").read_text(encoding="utf-8").splitlines())
            for split in ("train", "val", "test_2016_flickr") for lang in ("de", "en")}  # fmt: skip


def write_training_data(folder: Path, texts: dict) -> None:
    """train.src/tgt and valid.src/tgt (de→en) in `folder`, as both workers read them."""
    folder.mkdir()
    for ours, theirs in (("train", "train"), ("val", "valid")):
        (folder / f"{theirs}.src").write_text(texts[ours, "de"], encoding="utf-8")
        (folder / f"{theirs}.tgt").write_text(texts[ours, "en"], encoding="utf-8")


@pytest.fixture(scope="module")
def opennmt_models(multi30k_slice, tmp_path_factory):
    """The variants trained, decoded and scored by OpenNMT-py (one worker process), then imported."""
    if not OPENNMT_PYTHON.exists():
        pytest.fail(f"OpenNMT-py's environment is missing ({OPENNMT_PYTHON}); .ci/run makes it")
    data_dir = multi30k_slice(train=500, validation=8, test=40)
    work = tmp_path_factory.mktemp("opennmt")
    texts = single_spaced_texts(data_dir)
    (work / "train.both").write_text(texts["train", "de"] + texts["train", "en"], encoding="utf-8")
    models = []
    for name, options in {**VARIANTS, **SAFETENSORS, **REFUSED}.items():
        folder = work / name
        write_training_data(folder, texts)
        for transform in set(options.get("transforms", [])) & set(SUBWORD_MODELS):
            model = str(work / SUBWORD_MODELS[transform])
            options = {**options, "src_subword_model": model, "tgt_subword_model": model}
        models.append({"workdir": str(folder), "options": options, "train_only": name not in VARIANTS})
    sources, targets = texts["test_2016_flickr", "de"].splitlines(), texts["test_2016_flickr", "en"].splitlines()
    (work / "test.src").write_text("\n".join(sources) + "\n", encoding="utf-8")
    (work / "pairs.json").write_text(json.dumps([list(pair) for pair in zip(sources[:8], targets[:8])]))
    job = {
        "sentencepiece": {"input": str(work / "train.both"), "prefix": str(work / "spm"), "vocab_size": 400},
        "bpe": {"input": str(work / "train.both"), "codes": str(work / SUBWORD_MODELS["bpe"]), "merges": 400},
        "models": models, "test_src": str(work / "test.src"), "pairs": str(work / "pairs.json"),
    }  # fmt: skip
    (work / "job.json").write_text(json.dumps(job), encoding="utf-8")
    run([str(OPENNMT_PYTHON), str(WORKER), "job", str(work / "job.json")], cwd=work, timeout=900)
    imported = {}
    for name in VARIANTS:
        checkpoint = work / name / f"model_step_{150}.pt"
        imported[name] = {
            "checkpoint": checkpoint,
            "folder": import_opennmt(checkpoint, work / f"imported-{name}"),
            "workdir": work / name,
            "subword": next((t for t in VARIANTS[name].get("transforms", []) if t in SUBWORD_MODELS), None),
            "test_sources": sources,
        }
    return {"models": imported, "work": work}


def load(folder):
    return AutoModelForSeq2SeqLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_imported_model_segments_like_opennmt_and_computes_its_logits(opennmt_models, name):
    imported = opennmt_models["models"][name]
    model, tokenizer = load(imported["folder"])
    theirs = json.loads((imported["workdir"] / "batch.json").read_text())
    pairs = json.loads((opennmt_models["work"] / "pairs.json").read_text())
    batch = tokenizer([source for source, _ in pairs], return_tensors="pt", padding=True)
    # What the encoder reads: each token (as OpenNMT writes it), or <unk> where its source vocabulary lacks it.
    source_vocabulary = read_checkpoint(imported["checkpoint"]).vocab["src"]
    known = set(source_vocabulary)
    ours = [[token if token in known else "<unk>" for token in
             opennmt_tokens(tokenizer.convert_ids_to_tokens(ids[mask.bool()]), imported["subword"])]
            for ids, mask in zip(batch.input_ids, batch.attention_mask)]  # fmt: skip
    assert ours == [[source_vocabulary[i] for i in ids[:n]] for ids, n in zip(theirs["src"], theirs["src_len"])]
    with torch.no_grad():
        logits = model(**batch, decoder_input_ids=torch.tensor(theirs["tgt"])).logits
    expected = torch.from_numpy(numpy.load(imported["workdir"] / "logits.npy", allow_pickle=False))
    assert logits.shape == expected.shape
    for row, length in enumerate(theirs["tgt_len"]):
        torch.testing.assert_close(logits[row, :length], expected[row, :length], atol=1e-5, rtol=0)


def opennmt_tokens(tokens: list[str], subword: str | None) -> list[str]:
    """Our tokens as OpenNMT writes them: subword-nmt pieces but a word's last carry "@@"; ours mark the last "</w>"."""
    if subword != "bpe":
        return tokens
    return [t[: -len("</w>")] if t.endswith("</w>") else t if t.startswith("<") and t.endswith(">") else t + "@@"
            for t in tokens]  # fmt: skip


def _our_translations(imported, **generate_kwargs) -> list[str]:
    """As onmt_translate writes them: the tokens before </s>, joined by spaces, or with a subword transform the text
    they decode to."""
    model, tokenizer = load(imported["folder"])
    skipped = {model.config.pad_token_id, model.config.bos_token_id}
    translations = []
    for start in range(0, len(imported["test_sources"]), 16):
        batch = tokenizer(imported["test_sources"][start : start + 16], return_tensors="pt", padding=True)
        with torch.no_grad():
            output = model.generate(**batch, max_new_tokens=MAX_LENGTH, **generate_kwargs)
        for row in output.tolist():
            row = row[: row.index(model.config.eos_token_id)] if model.config.eos_token_id in row else row
            pieces = tokenizer.convert_ids_to_tokens([i for i in row if i not in skipped])
            as_text = tokenizer.convert_tokens_to_string if imported["subword"] else " ".join
            translations.append(as_text(pieces))
    return translations


def _opennmt_translations(imported, mode: str) -> list[str]:
    return (imported["workdir"] / f"{mode}.txt").read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_greedy_translations_equal_onmt_translate(opennmt_models, name):
    imported = opennmt_models["models"][name]
    theirs = _opennmt_translations(imported, "greedy")
    assert _our_translations(imported, num_beams=1) == theirs
    assert len(set(theirs)) > 5  # the trained models say different things of different sentences


def test_beam_search_agrees_with_onmt_translate_on_99_percent(opennmt_models):
    equal = total = 0
    differing = []
    for name, imported in opennmt_models["models"].items():
        ours = _our_translations(imported, num_beams=5, length_penalty=0.0)
        theirs = _opennmt_translations(imported, "beam")
        equal += sum(a == b for a, b in zip(ours, theirs, strict=True))
        total += len(theirs)
        differing += [(name, a, b) for a, b in zip(ours, theirs) if a != b]
    assert equal / total >= 0.99, f"{equal} of {total} beam-5 translations equal onmt_translate's: {differing}"


@pytest.mark.parametrize(
    "name, reason",
    [("transformer", "encoder_type='transformer' is not supported"), ("copy_attention", "copy_attn=True"),
     ("position_encoding", "position 0 at every translation step")],
)  # fmt: skip
def test_a_model_the_importer_cannot_represent_is_refused_naming_the_option(opennmt_models, tmp_path, name, reason):
    checkpoint = opennmt_models["work"] / name / "model_step_4.pt"
    with pytest.raises(OpenNMTImportError, match=reason):
        import_opennmt(checkpoint, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_weights_saved_as_safetensors_beside_the_checkpoint_are_read(opennmt_models, tmp_path):
    """Trained as OpenNMT's default variant, with the same seed and data: the same logits, from weights the .pt lacks."""
    checkpoint = opennmt_models["work"] / "lstm-brnn-general-safetensors" / "model_step_150.pt"
    with torch.serialization.safe_globals([argparse.Namespace]):
        assert "model" not in torch.load(checkpoint, weights_only=True)
    assert checkpoint.with_suffix(".safetensors").is_file()
    imported = opennmt_models["models"]["lstm-brnn-general"]
    model, tokenizer = load(import_opennmt(checkpoint, tmp_path / "out"))
    theirs = json.loads((imported["workdir"] / "batch.json").read_text())
    pairs = json.loads((opennmt_models["work"] / "pairs.json").read_text())
    batch = tokenizer([source for source, _ in pairs], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch, decoder_input_ids=torch.tensor(theirs["tgt"])).logits
    expected = torch.from_numpy(numpy.load(imported["workdir"] / "logits.npy", allow_pickle=False))
    for row, length in enumerate(theirs["tgt_len"]):
        torch.testing.assert_close(logits[row, :length], expected[row, :length], atol=1e-5, rtol=0)


UNPICKLED = []


def _record_unpickling():
    UNPICKLED.append(True)  # would run if the checkpoint's pickle were executed
    return "ran"


class _Hook:
    def __reduce__(self):
        return (_record_unpickling, ())


def test_a_checkpoint_carrying_another_pickled_global_is_refused_and_nothing_is_unpickled(opennmt_models, tmp_path):
    real = opennmt_models["models"]["lstm-brnn-general"]["checkpoint"]
    with torch.serialization.safe_globals([argparse.Namespace]):
        checkpoint = torch.load(real, weights_only=True)
    torch.save({**checkpoint, "hook": _Hook()}, tmp_path / "hooked.pt")
    with pytest.raises(OpenNMTImportError, match=r"_record_unpickling.*never runs a checkpoint's pickled code"):
        import_opennmt(tmp_path / "hooked.pt", tmp_path / "out")
    assert UNPICKLED == []


def test_an_opennmt_py_2_checkpoint_is_refused_saying_so(tmp_path, monkeypatch):
    """OpenNMT-py 1.x/2.x pickle torchtext Fields as the vocabulary; here a stand-in class of that module path."""
    for name in ("torchtext", "torchtext.data", "torchtext.data.field"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    field = type("Field", (), {"__module__": "torchtext.data.field", "__qualname__": "Field"})
    sys.modules["torchtext.data.field"].Field = field
    torch.save({"model": {}, "generator": {}, "vocab": {"src": field()}, "opt": None}, tmp_path / "v2.pt")
    with pytest.raises(OpenNMTImportError, match=r"1\.x/2\.x checkpoint.*convertv2_v3\.py"):
        import_opennmt(tmp_path / "v2.pt", tmp_path / "out")


def test_the_console_script_writes_a_complete_folder_and_reports_a_refusal(opennmt_models, tmp_path, monkeypatch,
                                                                           capsys):
    imported = opennmt_models["models"]["lstm-brnn-bridge-sentencepiece"]
    out = tmp_path / "cli"
    status, _, err = call_script(main, imported["checkpoint"], out, monkeypatch=monkeypatch, capsys=capsys)
    assert status == 0, err
    files = {path.name for path in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "README.md",
            "modeling_rnn_seq2seq.py", "configuration_rnn_seq2seq.py"} <= files  # fmt: skip
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "model_step_150.pt" in card and "opennmt" in card and "LSTM encoder–decoder with" in card
    generation = json.loads((out / "generation_config.json").read_text())
    # onmt_translate's defaults: beam 5, length-normalised scores, up to 250 tokens; <s> (id 2) starts.
    assert (generation["num_beams"], generation["length_penalty"], generation["max_new_tokens"]) == (5, 1.0, 250)
    assert (generation["decoder_start_token_id"], generation["eos_token_id"], generation["pad_token_id"]) == (2, 3, 1)
    status, _, err = call_script(main, tmp_path / "missing.pt", tmp_path / "none", monkeypatch=monkeypatch,
                                 capsys=capsys)  # fmt: skip
    assert status == 2 and "missing.pt not found" in err
