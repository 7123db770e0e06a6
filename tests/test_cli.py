"""Translation and the console scripts: batching, odd inputs, truncation, evaluation and attention plots.

Each console script runs once as the installed executable in a subprocess (as a user runs it); its other behaviour
is checked in-process, where a run costs no interpreter start.
"""

import importlib.metadata
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hf_rnn_seq2seq import RNNSeq2SeqForConditionalGeneration, cli, precision
from hf_rnn_seq2seq.metrics import load_metric
from hf_rnn_seq2seq.plotting import attention_figure, attention_matrix
from hf_rnn_seq2seq.tokenization import reader_tokens
from hf_rnn_seq2seq.tokenization import train_bpe_tokenizer
from hf_rnn_seq2seq.data import normalize
from hf_rnn_seq2seq.translation import MAX_SOURCE_LENGTH, decode, load_model, translate
from helpers import MAX_NEW_TOKENS, call_script, read

SCRIPTS = {
    "hf-rnn-seq2seq-train": "hf_rnn_seq2seq.cli:train_main",
    "hf-rnn-seq2seq-translate": "hf_rnn_seq2seq.cli:translate_main",
    "hf-rnn-seq2seq-evaluate": "hf_rnn_seq2seq.cli:evaluate_main",
    "hf-rnn-seq2seq-plot-attention": "hf_rnn_seq2seq.cli:plot_attention_main",
}


def run_script(name, *args, stdin=None):
    """Run an installed console script (the executable pip wrote beside this interpreter)."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name(name)), *map(str, args)], input=stdin, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_batched_translation_equals_one_by_one(model_folder, multi30k_dir):
    _, model, tokenizer = model_folder
    sentences = read(multi30k_dir / "val.de.gz", 6)
    batched = translate(model, tokenizer, sentences, batch_size=4, num_beams=3)
    alone = [translate(model, tokenizer, [sentence], num_beams=3)[0] for sentence in sentences]
    assert batched == alone


@pytest.mark.parametrize(
    "sentence",
    ["x", "😀🎉 Ein Hund.", "Собака бежит по траве.", "犬が走る。", "Ein\x00Mann\x07\u200b läuft.", "a" * 500],
)
def test_odd_inputs_translate_within_the_length_bound(model_folder, sentence, monkeypatch):
    """translate() itself, watched at its call of generate(): what it gave the model and what it made of the answer."""
    _, model, tokenizer = model_folder
    calls = []

    def watched_generate(**kwargs):
        calls.append((kwargs, original_generate(**kwargs)))
        return calls[-1][1]

    original_generate = model.generate
    monkeypatch.setattr(model, "generate", watched_generate)
    (translation,) = translate(model, tokenizer, [sentence])
    ((kwargs, generated),) = calls  # one sentence: one batch
    expected_ids = tokenizer(normalize(sentence), truncation=True, max_length=MAX_SOURCE_LENGTH)["input_ids"]
    assert kwargs["input_ids"].tolist() == [expected_ids]  # normalised, cut to the source limit
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
    out = run_script("hf-rnn-seq2seq-translate", folder, "--num_beams", "2", "--batch_size", "2",
                     stdin="\n".join(sentences) + "\n")
    assert out.splitlines() == translate(model, tokenizer, sentences, num_beams=2)


def test_translate_script_shows_a_progress_bar_unless_asked_not_to(model_folder, monkeypatch, capsys):
    folder, _, _ = model_folder
    five = "Ein Hund.\nZwei Katzen.\nEin Mann.\nDrei Kinder.\nEine Frau.\n"
    status, out, err = call_script(cli.translate_main, folder, "--batch_size", "2", stdin=five,
                                   monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert status == 0 and len(out.splitlines()) == 5
    assert "translating: 5line" in err and "line/s" in err  # tqdm on stderr: lines done, and lines a second
    status, out, err = call_script(cli.translate_main, folder, "--batch_size", "2", "--no_progress", stdin=five,
                                   monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert status == 0 and len(out.splitlines()) == 5 and "line/s" not in err


def test_train_script_trains_and_saves_a_loadable_model(tiny_run):
    """hf-rnn-seq2seq-train (which made the shared run) is train.py: the same flags, the same output folder."""
    folder = tiny_run.folder
    assert json.loads((folder / "train_results.json").read_text())["train_samples"] == 200
    assert json.loads((folder / "trainer_state.json").read_text())["global_step"] == 14  # 2 epochs of 200 / 32
    assert json.loads((folder / "test_results.json").read_text())["num_samples"] == 24
    assert (folder / "checkpoint-7").is_dir() and (folder / "checkpoint-14").is_dir()
    model = RNNSeq2SeqForConditionalGeneration.from_pretrained(folder)
    assert model.num_parameters() > 0 and (folder / "tokenizer.json").is_file()


def test_translate_script_samples_reproducibly(model_folder, tmp_path, monkeypatch, capsys):
    folder, _, _ = model_folder
    (tmp_path / "in.txt").write_text("Ein Mann.\nZwei Frauen.\n")
    args = (folder, "--input", tmp_path / "in.txt", "--do_sample", "--top_p", "0.9", "--temperature", "0.8")

    def sample(seed):
        status, out, _ = call_script(cli.translate_main, *args, "--seed", seed, monkeypatch=monkeypatch, capsys=capsys)
        assert status == 0 and len(out.splitlines()) == 2
        return out

    assert sample(3) == sample(3)
    assert len({sample(seed) for seed in range(4)}) > 1  # it samples: the seed matters


def test_evaluate_script_scores_real_data_like_sacrebleu(model_folder, multi30k_dir, tmp_path):
    folder, model, tokenizer = model_folder
    sources, references = read(multi30k_dir / "val.de.gz", 20), read(multi30k_dir / "val.en.gz", 20)
    (tmp_path / "src.de").write_text("\n".join(sources) + "\n")
    (tmp_path / "ref.en").write_text("\n".join(references) + "\n")
    out = json.loads(run_script("hf-rnn-seq2seq-evaluate", folder, "--source", tmp_path / "src.de",
                                "--reference", tmp_path / "ref.en"))  # fmt: skip
    expected = load_metric().compute(predictions=translate(model, tokenizer, sources), references=references)
    assert out["num_samples"] == 20
    assert out["bleu"] == pytest.approx(expected["bleu"]) and out["chrf"] == pytest.approx(expected["chrf"])
    assert out["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")


def test_evaluate_script_refuses_misaligned_files_with_a_message(model_folder, tmp_path, monkeypatch, capsys):
    folder, _, _ = model_folder
    (tmp_path / "src").write_text("a\nb\n")
    (tmp_path / "ref").write_text("a\n")
    status, out, err = call_script(cli.evaluate_main, folder, "--source", tmp_path / "src", "--reference",
                                   tmp_path / "ref", monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert status == 2 and out == ""
    assert "hf-rnn-seq2seq-evaluate: error:" in err and "has 2 lines but" in err and "Traceback" not in err
    status, _, err = call_script(cli.translate_main, folder, "--input", tmp_path / "missing.txt",
                                 monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert status == 2 and "missing.txt" in err


def test_heatmap_labels_are_the_words_a_reader_sees(model_folder):
    """No tokenizer marks ("▁"); a piece that continues a word is marked "##"; the labels spell the decoded text."""
    _, _, tokenizer = model_folder
    sentence = "Ein Mann mit einem orangefarbenen Hut starrt auf etwas."
    ids = tokenizer(sentence)["input_ids"]
    labels = reader_tokens(tokenizer, tokenizer.convert_ids_to_tokens(ids))
    assert not any("▁" in label for label in labels) and labels[-1] == "</s>"
    assert any(label.startswith("##") for label in labels[:-1])  # "orangefarbenen" is several pieces in 400 tokens
    words = []
    for label in labels[:-1]:
        if label.startswith("##"):
            words[-1] += label[2:]
        else:
            words.append(label)
    assert " ".join(words) == tokenizer.decode(ids, skip_special_tokens=True) == sentence


def test_plot_attention_script_writes_a_heatmap_of_target_by_source(model_folder, tmp_path):
    folder, model, tokenizer = model_folder
    sentence = "Ein Mann mit einem Hut."
    out = json.loads(run_script("hf-rnn-seq2seq-plot-attention", folder, sentence, "--output", tmp_path / "a.png"))
    source, target, weights = attention_matrix(model, tokenizer, sentence)
    assert (out["source_tokens"], out["target_tokens"]) == (source, target)
    # The source with its EOS as columns; the greedy translation, cut after its EOS, as rows.
    assert source == reader_tokens(tokenizer, tokenizer.convert_ids_to_tokens(tokenizer(sentence)["input_ids"]))
    assert source[-1] == "</s>"
    generated = model.generate(**tokenizer([sentence], return_tensors="pt"), num_beams=1, max_new_tokens=64)[0, 1:]
    generated = generated.tolist()
    if tokenizer.eos_token_id in generated:
        generated = generated[: generated.index(tokenizer.eos_token_id) + 1]
    assert target == reader_tokens(tokenizer, tokenizer.convert_ids_to_tokens(generated))
    # The heatmap the script drew: one row per target token, one column per source token, each row a distribution.
    drawn = torch.tensor(out["weights"])
    assert drawn.shape == weights.shape == (len(target), len(source))
    torch.testing.assert_close(drawn, torch.from_numpy(weights))
    torch.testing.assert_close(drawn.sum(-1), torch.ones(len(target)))
    # The PNG is that heatmap's figure, pixel for pixel: a grid of len(target) rows by len(source) columns.
    figure = attention_figure(source, target, weights)
    (drawn_image,) = figure.axes[0].images
    assert drawn_image.get_array().shape == (len(target), len(source))
    assert [label.get_text() for label in figure.axes[0].get_yticklabels()] == target
    assert [label.get_text() for label in figure.axes[0].get_xticklabels()] == source
    figure.savefig(tmp_path / "reference.png", dpi=100)
    with Image.open(tmp_path / "a.png") as image, Image.open(tmp_path / "reference.png") as reference:
        assert image.format == "PNG" and image.size == reference.size
        assert np.array_equal(np.asarray(image), np.asarray(reference))


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_console_scripts_are_installed_with_help(script, monkeypatch, capsys):
    (entry_point,) = importlib.metadata.entry_points(group="console_scripts", name=script)
    assert entry_point.value == SCRIPTS[script]
    assert Path(sys.executable).with_name(script).is_file()
    status, out, _ = call_script(entry_point.load(), "--help", monkeypatch=monkeypatch, capsys=capsys)
    assert status == 0 and "usage:" in out


def test_a_tokenizer_of_another_vocabulary_is_refused(model_folder, multi30k_dir, tmp_path, monkeypatch, capsys):
    folder, _, tokenizer = model_folder
    other = train_bpe_tokenizer(read(multi30k_dir / "train.en.gz", 200), vocab_size=300)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("config.json", "configuration_rnn_seq2seq.py", "modeling_rnn_seq2seq.py", "model.safetensors"):
        (mixed / name).write_bytes((folder / name).read_bytes())
    other.save_pretrained(mixed)
    status, _, err = call_script(cli.translate_main, mixed, stdin="Ein Mann.\n", monkeypatch=monkeypatch, capsys=capsys)
    assert status == 2
    assert f"the tokenizer has {len(other)} tokens but {mixed} has vocab_size={len(tokenizer)}" in err


def test_dtype_flag_loads_the_model_in_that_type(model_folder, monkeypatch, capsys):
    """--dtype bfloat16 (and auto, where the CPU computes bfloat16 natively) translates in bfloat16; auto on a CPU
    without it stays float32."""
    loaded = []
    monkeypatch.setattr(cli, "load_model", lambda *args, **kwargs: loaded.append(kwargs["dtype"]) or load_model(
        *args, **kwargs))
    for dtype in ("bfloat16", "float32"):
        status, out, _ = call_script(cli.translate_main, model_folder[0], "--dtype", dtype, stdin="Ein Hund.\n\n",
                                     monkeypatch=monkeypatch, capsys=capsys)
        assert status == 0 and len(out.splitlines()) == 2
    monkeypatch.setattr(precision, "native_bfloat16", lambda device: False)
    call_script(cli.translate_main, model_folder[0], "--dtype", "auto", stdin="Ein Hund.\n", monkeypatch=monkeypatch,
                capsys=capsys)
    assert loaded == [torch.bfloat16, torch.float32, torch.float32]
