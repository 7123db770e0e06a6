"""Translation and the console scripts: batching, odd inputs, truncation, evaluation and attention plots."""

import gzip
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration
from hf_rnn_seq2seq.metrics import load_metric
from hf_rnn_seq2seq.plotting import attention_matrix
from hf_rnn_seq2seq.tokenization import train_bpe_tokenizer
from hf_rnn_seq2seq.data import normalize
from hf_rnn_seq2seq.translation import decode, translate

MAX_NEW_TOKENS = 12


def read(path, count):
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [next(handle).rstrip("\n") for _ in range(count)]


@pytest.fixture(scope="module")
def model_folder(multi30k_dir, tmp_path_factory):
    """A tokenizer trained on real Multi30k lines and a small random model, saved as train.py saves them."""
    texts = read(multi30k_dir / "train.de.gz", 300) + read(multi30k_dir / "train.en.gz", 300)
    tokenizer = train_bpe_tokenizer(texts, vocab_size=400)
    torch.manual_seed(0)
    config = RNNSeq2SeqConfig(vocab_size=len(tokenizer), embedding_dim=16, hidden_size=24, dropout=0.0)
    model = RNNSeq2SeqForConditionalGeneration(config).eval()
    model.generation_config.max_new_tokens = MAX_NEW_TOKENS
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model, tokenizer


def run_script(name, *args, stdin=None):
    script = [sys.executable, "-c", f"import sys; from hf_rnn_seq2seq.cli import {name}; {name}(sys.argv[1:])"]
    result = subprocess.run([*script, *map(str, args)], input=stdin, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_batched_translation_equals_one_by_one(model_folder, multi30k_dir):
    _, model, tokenizer = model_folder
    sentences = read(multi30k_dir / "val.de.gz", 9)
    batched = translate(model, tokenizer, sentences, batch_size=4, num_beams=3)
    alone = [translate(model, tokenizer, [sentence], num_beams=3)[0] for sentence in sentences]
    assert batched == alone


@pytest.mark.parametrize(
    "sentence",
    ["x", "😀🎉 Ein Hund.", "Собака бежит по траве.", "犬が走る。", "Ein\x00Mann\x07\u200b läuft.", "a" * 500],
)
def test_odd_inputs_translate_within_the_length_bound(model_folder, sentence):
    _, model, tokenizer = model_folder
    (translation,) = translate(model, tokenizer, [sentence])
    generated = model.generate(**tokenizer([normalize(sentence)], return_tensors="pt"))
    assert generated.shape[1] <= 1 + MAX_NEW_TOKENS  # the start token and at most max_new_tokens
    assert translation == decode(tokenizer, generated.numpy())[0]


def test_empty_and_whitespace_inputs_translate_to_empty_strings(model_folder):
    _, model, tokenizer = model_folder
    assert translate(model, tokenizer, ["", "   \t", "\u00a0"]) == ["", "", ""]
    assert translate(model, tokenizer, []) == []


def test_very_long_input_is_truncated_with_a_warning(model_folder, caplog):
    _, model, tokenizer = model_folder
    long_sentence = " ".join(["Mann"] * 10_000)
    with caplog.at_level(logging.WARNING, logger="hf_rnn_seq2seq.translation"):
        translations = translate(model, tokenizer, [long_sentence, "Ein Hund."], max_source_length=64)
    assert "1 of 2 sentences are longer than max_source_length=64" in caplog.text
    assert translations[0] == translate(model, tokenizer, [" ".join(["Mann"] * 63)])[0]  # 63 tokens + EOS


def test_translate_script_reads_stdin(model_folder, multi30k_dir):
    folder, model, tokenizer = model_folder
    sentences = read(multi30k_dir / "val.de.gz", 5)
    out = run_script("translate_main", folder, "--num_beams", "2", "--batch_size", "2", stdin="\n".join(sentences) + "\n")
    assert out.splitlines() == translate(model, tokenizer, sentences, num_beams=2)


def test_translate_script_samples_reproducibly(model_folder):
    folder, _, _ = model_folder
    args = (folder, "--do_sample", "--top_p", "0.9", "--temperature", "0.8", "--seed", "3")
    first = run_script("translate_main", *args, stdin="Ein Mann.\nZwei Frauen.\n")
    assert first == run_script("translate_main", *args, stdin="Ein Mann.\nZwei Frauen.\n")
    assert len(first.splitlines()) == 2


def test_evaluate_script_scores_real_data_like_sacrebleu(model_folder, multi30k_dir, tmp_path):
    folder, model, tokenizer = model_folder
    sources, references = read(multi30k_dir / "val.de.gz", 20), read(multi30k_dir / "val.en.gz", 20)
    (tmp_path / "src.de").write_text("\n".join(sources) + "\n")
    (tmp_path / "ref.en").write_text("\n".join(references) + "\n")
    out = json.loads(run_script("evaluate_main", folder, "--source", tmp_path / "src.de", "--reference", tmp_path / "ref.en"))
    expected = load_metric().compute(predictions=translate(model, tokenizer, sources), references=references)
    assert out["num_samples"] == 20
    assert out["bleu"] == pytest.approx(expected["bleu"]) and out["chrf"] == pytest.approx(expected["chrf"])
    assert out["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")


def test_evaluate_script_refuses_misaligned_files(model_folder, tmp_path):
    folder, _, _ = model_folder
    (tmp_path / "src").write_text("a\nb\n")
    (tmp_path / "ref").write_text("a\n")
    script = [sys.executable, "-c", "import sys; from hf_rnn_seq2seq.cli import evaluate_main; evaluate_main(sys.argv[1:])"]
    result = subprocess.run([*script, str(folder), "--source", str(tmp_path / "src"), "--reference", str(tmp_path / "ref")],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "has 2 lines but" in result.stderr


def test_plot_attention_script_writes_a_heatmap_of_target_by_source(model_folder, tmp_path):
    folder, model, tokenizer = model_folder
    sentence = "Ein Mann mit einem Hut."
    out = json.loads(run_script("plot_attention_main", folder, sentence, "--output", tmp_path / "a.png"))
    source, target, weights = attention_matrix(model, tokenizer, sentence)
    assert (out["source_tokens"], out["target_tokens"]) == (source, target)
    assert weights.shape == (len(target), len(source))
    assert torch.allclose(torch.from_numpy(weights).sum(-1), torch.ones(len(target)), atol=1e-5)
    with Image.open(tmp_path / "a.png") as image:
        assert image.format == "PNG" and min(image.size) > 100


@pytest.mark.parametrize(
    "script", ["hf-rnn-seq2seq-train", "hf-rnn-seq2seq-translate", "hf-rnn-seq2seq-evaluate", "hf-rnn-seq2seq-plot-attention"]
)
def test_console_scripts_are_installed_with_help(script):
    path = Path(sys.executable).with_name(script)
    result = subprocess.run([str(path), "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout


def test_a_tokenizer_of_another_vocabulary_is_refused(model_folder, multi30k_dir, tmp_path):
    folder, _, tokenizer = model_folder
    other = train_bpe_tokenizer(read(multi30k_dir / "train.en.gz", 200), vocab_size=300)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("config.json", "configuration_rnn_seq2seq.py", "modeling_rnn_seq2seq.py", "model.safetensors"):
        (mixed / name).write_bytes((folder / name).read_bytes())
    other.save_pretrained(mixed)
    script = [sys.executable, "-c", "import sys; from hf_rnn_seq2seq.cli import translate_main; translate_main(sys.argv[1:])"]
    result = subprocess.run([*script, str(mixed)], input="Ein Mann.\n", capture_output=True, text=True)
    assert result.returncode != 0
    assert f"the tokenizer has {len(other)} tokens but {mixed} has vocab_size={len(tokenizer)}" in result.stderr
