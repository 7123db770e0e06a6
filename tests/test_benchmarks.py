"""Each benchmark script runs end to end on a tiny budget, so the scripts do not rot."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import TINY
from test_results_quoted import table_rows

from hf_rnn_seq2seq.precision import native_bfloat16

REPO = Path(__file__).resolve().parents[1]


def test_train_speed_runs_on_a_tiny_budget(multi30k_dir, tmp_path):
    out = tmp_path / "train_speed.md"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "train_speed.py"), "--data_dir", str(multi30k_dir),
         "--vocab_size", "300", "--batch_size", "8", "--batches", "1", "--configs", "luong_general",
         "bahdanau+feeding", "--sizes", "default", "--out", str(out)],
        check=True, capture_output=True, text=True,
    )
    rows = [row for row in table_rows(out.read_text()) if row[0] in ("luong_general", "bahdanau+feeding")]
    assert [row[:2] for row in rows] == [[config, "default"] for config in ("luong_general", "bahdanau+feeding")]
    assert all(float(row[3]) > 0 for row in rows)  # tokens/s


def test_quality_table_collects_finished_runs(multi30k_slice, tmp_path):
    data_dir = multi30k_slice(train=8, validation=8, test=40)
    references = (data_dir / "test_2016_flickr.en").read_text(encoding="utf-8").splitlines()
    run = tmp_path / "run"
    run.mkdir()
    (run / "test_results.json").write_text(json.dumps({
        "source_lang": "de", "target_lang": "en", "bleu": 41.5, "chrf": 61.0, "length_ratio": 0.99, "num_beams": 5,
        "bleu_signature": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0",
    }))
    (run / "all_results.json").write_text(json.dumps({"eval_bleu": 40.0, "train_runtime": 600.0}))
    # Right but for case: the lower-cased score, computed by the script from the translations, is 100.
    (run / "generated_predictions.txt").write_text("".join(r.lower() + "\n" for r in references))
    out = tmp_path / "quality.md"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "quality_table.py"), f"{run}=python train.py recipe.yaml",
         "--data_dir", str(data_dir), "--out", str(out)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    table = out.read_text()
    assert "| de→en | `python train.py recipe.yaml` | 40.00 | **41.50** | 100.00 | 61.00 | 0.990 | 5 | 10.0 |" in table
    assert "tok:13a" in table and "case:lc" in table


def test_translate_speed_runs_on_a_tiny_budget(multi30k_dir, tmp_path):
    import gzip

    import torch

    from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration
    from hf_rnn_seq2seq.tokenization import train_bpe_tokenizer

    with gzip.open(multi30k_dir / "train.de.gz", "rt", encoding="utf-8") as handle:
        texts = [next(handle) for _ in range(200)]
    tokenizer = train_bpe_tokenizer(texts, vocab_size=300)
    torch.manual_seed(0)
    model = RNNSeq2SeqForConditionalGeneration(RNNSeq2SeqConfig(vocab_size=len(tokenizer), embedding_dim=8, hidden_size=8))
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    out = tmp_path / "translate_speed.md"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "translate_speed.py"), str(tmp_path / "model"), "--data_dir",
         str(multi30k_dir), "--max_sentences", "8", "--batch_size", "4", "--max_new_tokens", "5", "--out", str(out)],
        check=True, capture_output=True, text=True,
    )
    table = out.read_text()
    assert "| greedy |" in table and "| beam 5 |" in table and "overhead x" in table


def test_translate_file_runs_on_a_tiny_budget(model_folder, multi30k_dir, tmp_path):
    out = tmp_path / "translate_file.md"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "translate_file.py"), str(model_folder[0]), "--data_dir",
         str(multi30k_dir), "--lines", "30", "--max_new_tokens", "3", "--processes", "1", "--out", str(out)],
        check=True, capture_output=True, text=True,
    )
    rows = [row[:2] for row in table_rows(out.read_text()) if row[0] in ("greedy", "beam 5")]
    assert rows == [["greedy", "1"], ["beam 5", "1"]]


def test_beam_step_splits_a_step_into_parts_that_add_up_in_both_types(model_folder, multi30k_dir, tmp_path):
    out = tmp_path / "beam_step.md"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "beam_step.py"), str(model_folder[0]), "--data_dir",
         str(multi30k_dir), "--sentences", "8", "--batch_size", "4", "--max_new_tokens", "4", "--rounds", "1",
         "--out", str(out)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    rows = {
        row[0]: [float(cell.rstrip("×")) for cell in row[1:]]
        for row in table_rows(out.read_text()) if row[0] in ("float32", "bfloat16", "float32 / bfloat16")
    }  # fmt: skip
    assert len(rows) == 3
    for name in ("float32", "bfloat16"):
        step, products, model_other, generate_own, encoder = rows[name]
        assert step == pytest.approx(products + model_other + generate_own, abs=0.03)  # two-decimal rounding
        assert min(products, model_other, generate_own, encoder) > 0


@pytest.mark.skipif(not native_bfloat16(torch.device("cpu")), reason="this CPU does not compute bfloat16 natively")
def test_precision_trains_and_decodes_both_ways_on_a_tiny_budget(multi30k_slice, tmp_path):
    data_dir = multi30k_slice(train=64, validation=8, test=8)
    out = tmp_path / "precision.md"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "precision.py"), "--data_dir", str(data_dir), "--runs_dir",
         str(tmp_path / "runs"), "--out", str(out), "--", *TINY, "--max_steps", "2", "--eval_strategy", "no",
         "--save_strategy", "no", "--load_best_model_at_end", "false"],
        check=True, capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    rows = [row for row in table_rows(out.read_text()) if row[0] in ("float32", "bfloat16")]
    assert [(row[0], row[4]) for row in rows] == [
        ("float32", "float32"), ("float32", "bfloat16"), ("bfloat16", "float32"), ("bfloat16", "bfloat16")
    ]
    assert json.loads((tmp_path / "runs" / "bfloat16" / "config.json").read_text())["dtype"] == "float32"
    # Float32 results and bfloat16 speed depend on the CPU model: the table names it.
    assert re.search(r"Machine: \d+ CPUs \(\S.*\), \d+ torch threads", out.read_text())


def test_marian_side_by_side_runs_on_a_tiny_budget(multi30k_dir, tmp_path):
    """Marian runs in its own venv, .cache/marian-venv, which .ci/run makes (a test installs nothing)."""
    out = tmp_path / "marian_side_by_side.md"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "marian_side_by_side.py"), "--data_dir", str(multi30k_dir),
         "--work_dir", str(tmp_path / "work"), "--vocab_size", "500", "--embedding_dim", "16", "--hidden_size", "32",
         "--batch_size", "16", "--updates", "30", "--train_pairs", "400", "--test_sentences", "4", "--out", str(out)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    rows = [row for row in table_rows(out.read_text()) if row[0].startswith(("Marian", "ours"))]
    assert [row[0] for row in rows] == ["Marian 1.12.42, marian-decoder (CPU)",
                                        "ours, Marian's weights imported, float32",
                                        "ours, Marian's weights imported, bfloat16"]  # fmt: skip
    for name, speed, _, output_tokens, equal, peak, bleu in rows:
        assert float(speed) > 0 and float(output_tokens) > 0 and float(peak) > 0 and 0 <= float(bleu) <= 100
    assert rows[0][4] == "4/4"  # (so brief a training never ends a sentence: how often ours equal Marian's varies)


def test_onnx_speed_runs_on_a_tiny_budget(model_folder, multi30k_slice, tmp_path):
    out = tmp_path / "onnx_speed.md"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "onnx_speed.py"), str(model_folder[0]), "--data_dir",
         str(multi30k_slice(train=64, validation=8, test=8)), "--latency_sentences", "3", "--work_dir",
         str(tmp_path / "work"), "--out", str(out)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    rows = [row for row in table_rows(out.read_text()) if row[0].startswith(("PyTorch", "onnx"))]
    assert [(row[0], row[1]) for row in rows] == [
        (runtime, decoding) for runtime in ("PyTorch float32", "onnxruntime float32", "onnxruntime int8")
        for decoding in ("greedy", "beam 5")
    ]
    # The float32 export translates as generate() does: the same BLEU.
    assert rows[0][2] == rows[2][2] and rows[1][2] == rows[3][2]


def test_joeynmt_side_by_side_runs_on_a_tiny_budget(multi30k_dir, tmp_path):
    """JoeyNMT runs in its own venv, .cache/joeynmt-venv, which .ci/run makes (a test installs nothing)."""
    out = tmp_path / "side_by_side.md"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "joeynmt_side_by_side.py"), "--data_dir", str(multi30k_dir),
         "--work_dir", str(tmp_path / "work"), "--vocab_size", "500", "--embedding_dim", "16", "--hidden_size", "32",
         "--batch_size", "16", "--updates", "4", "--logging_freq", "2", "--train_pairs", "400", "--dev_sentences", "8",
         "--test_sentences", "16", "--max_output_length", "8", "--out", str(out)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    rows = {row[0]: row[1:] for row in table_rows(out.read_text()) if row[0].startswith(("Joey", "ours"))}
    joeynmt, imported, configured = "JoeyNMT 2.3, Bahdanau + input feeding", "ours, JoeyNMT's trained weights imported", \
        "ours, JoeyNMT's model trained"  # fmt: skip
    imported_bf16 = f"{imported}, bfloat16"
    assert list(rows) == [joeynmt, imported, imported_bf16, configured, "ours, Luong general (fast path, another model)"]
    # The same model: JoeyNMT's parameter count, whether imported or configured and trained here.
    assert rows[joeynmt][0] == rows[imported][0] == rows[imported_bf16][0] == rows[configured][0]
    assert rows[imported][1] == rows[imported_bf16][1] == "—"  # trained by JoeyNMT
    for name, row in rows.items():
        sentences_per_second, output_tokens, bleu = float(row[5]), float(row[7]), float(row[9])
        assert sentences_per_second > 0 and 0 < output_tokens <= 8 and 0 <= bleu <= 100
        assert name in (imported, imported_bf16) or float(row[1]) > 0


def test_attention_story_scores_each_length_bucket(multi30k_slice, tmp_path):
    from PIL import Image

    from hf_rnn_seq2seq import RNNSeq2SeqConfig

    data_dir = multi30k_slice(train=8, validation=8, test=300)
    sources = (data_dir / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()
    references = (data_dir / "test_2016_flickr.en").read_text(encoding="utf-8").splitlines()
    runs = {"perfect": references, "short only": [r if len(s.split()) <= 10 else "x" for s, r in zip(sources, references)]}
    for name, hypotheses in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "generated_predictions.txt").write_text("".join(h + "\n" for h in hypotheses))
        RNNSeq2SeqConfig(vocab_size=100, embedding_dim=8, hidden_size=8).save_pretrained(tmp_path / name)
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "attention_story.py"), *(f"{n}={tmp_path / n}" for n in runs),
         "--data_dir", str(data_dir), "--out", str(tmp_path / "story")],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    table = (tmp_path / "story.md").read_text()
    header, *rows = table_rows(table)
    assert header[0] == "model"
    counts = [int(cell.split("(")[1].rstrip(")")) for cell in header[4:]]
    assert sum(counts[:-1]) == counts[-1] == 300  # every sentence in exactly one bucket
    rows = {row[0].split("(")[0].strip(): row[4:] for row in rows if row[0].startswith(("perfect", "short only"))}
    assert [float(cell) for cell in rows["perfect"]] == [100.0] * 5
    short_only = [float(cell) for cell in rows["short only"]]
    assert short_only[0] == 100.0 and max(short_only[1:4]) < 1.0
    with Image.open(tmp_path / "story.png") as image:
        assert image.width > 300 and image.height > 200


def test_decoding_sweep_selects_on_validation_and_averages_checkpoints(multi30k_slice, tmp_path):
    data_dir = multi30k_slice(train=200, validation=16, test=16)
    run = tmp_path / "run"
    subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--data_dir", str(data_dir), "--output_dir", str(run),
         "--vocab_size", "400", "--embedding_dim", "16", "--hidden_size", "24", "--encoder_hidden_size", "16",
         "--num_train_epochs", "3", "--do_train", "--eval_strategy", "no", "--save_strategy", "epoch",
         "--save_total_limit", "3", "--max_target_length", "24", "--val_max_target_length", "24",
         "--disable_tqdm", "true"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    out = tmp_path / "sweep.md"
    sweep_command = [sys.executable, str(REPO / "benchmarks" / "decoding_sweep.py"), str(run), "--data_dir",
                     str(data_dir), "--beams", "1", "2", "--length_penalties", "0.6", "1.4", "--out", str(out)]  # fmt: skip

    def weight_rows(table):
        return [row for row in table_rows(table.read_text()) if row[0].startswith(("final", "average"))]

    subprocess.run([*sweep_command, "--average", "2", "3"], check=True, capture_output=True, text=True)
    rows = weight_rows(out)
    checkpoints = sorted(run.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    assert len(checkpoints) == 3
    last_two = f"average of {', '.join(c.name for c in checkpoints[1:])}"
    all_three = f"average of {', '.join(c.name for c in checkpoints)}"
    # Greedy once (no length penalty), beam 2 with each penalty; for the final weights and each averaging window.
    assert [tuple(r[:3]) for r in rows] == [
        (weights, beams, penalty)
        for weights in ("final weights", last_two, all_three)
        for beams, penalty in (("1", "1.0"), ("2", "0.6"), ("2", "1.4"))
    ]
    too_many = subprocess.run([*sweep_command, "--average", "4"], capture_output=True, text=True)
    assert too_many.returncode != 0 and "--average 4" in too_many.stderr and "has 3 checkpoint" in too_many.stderr
    unaveraged = tmp_path / "unaveraged.md"
    subprocess.run([*sweep_command[:-1], str(unaveraged), "--average"], check=True, capture_output=True, text=True)
    assert [row[0] for row in weight_rows(unaveraged)] == ["final weights"] * 3
    best = max(rows, key=lambda r: float(r[3]))
    assert f"Best on validation: {best[0]}, beam {best[1]}, length penalty {best[2]}" in out.read_text()

    # The averaged model holds the mean of the checkpoints' tensors, the tied head included.
    import importlib.util

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("decoding_sweep", REPO / "benchmarks" / "decoding_sweep.py")
        sweep = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sweep)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    from safetensors.torch import load_file

    model = sweep.averaged_model(run, checkpoints)
    states = [load_file(c / "model.safetensors") for c in checkpoints]
    for name, tensor in model.state_dict().items():
        stored = name if name in states[0] else "model.encoder.embed_tokens.weight"  # the tied head
        assert torch.allclose(tensor, sum(s[stored] for s in states) / len(states)), name
    assert not torch.equal(states[0]["model.decoder.bridge.weight"], states[1]["model.decoder.bridge.weight"])


def test_scale_measures_a_first_and_a_cached_second_run(tmp_path):
    """The second runs are runs on the first run's cache: they load its tokenizer and add nothing to the cache (which
    a run that read or tokenized the corpus again would). Which run is faster is not tested: at 3,000 pairs the
    stages take tenths of a second, and another job on the machine decides."""
    out, work = tmp_path / "scale.md", tmp_path / "work"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "scale.py"), "--sizes", "3000", "--work", str(work),
         "--second-runs", "2", "--out", str(out)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (measured,) = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    first_run, *second_runs = measured["runs"]
    assert measured["size"] == 3000 and len(second_runs) == 2
    assert first_run["cache_gb"] > 0 and all(run["cache_gb"] == first_run["cache_gb"] for run in second_runs)
    tokenizer_reused = "the tokenizer trained on these pairs before"
    logs = [(work / f"train-3000-{attempt}.log").read_text(encoding="utf-8") for attempt in (1, 2, 3)]
    assert [tokenizer_reused in log for log in logs] == [False, True, True]

    first, second = [row for row in table_rows(out.read_text()) if row[0] == "3000"]
    assert [first[1], second[1]] == ["first", "second (median of 2)"]
    seconds = [float(cell) for row in (first, second) for cell in row[2:6]]  # to the first step and each stage
    assert all(value >= 0 for value in seconds) and float(first[2]) > 0
    assert second[-1] == ", ".join(f"{run['peak_gb']:.2f}" for run in second_runs)  # each second run's peak
    assert all(float(row[-4]) > 0.1 for row in (first, second))  # peak memory (GB)
    assert out.with_suffix(".png").stat().st_size > 0


def test_demo_speed_runs_on_a_tiny_budget(tiny_run, multi30k_dir, tmp_path):
    out = tmp_path / "demo_speed.md"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "demo_speed.py"), "--model", str(tiny_run.folder), "--data_dir",
         str(multi30k_dir), "--starts", "1", "--sentences", "2", "--out", str(out)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (row,) = [row for row in table_rows(out.read_text()) if row[0] == f"`{tiny_run.folder}`"]
    start_seconds, median_request = (float(cell) for cell in row[1:3])
    assert start_seconds > 0 and median_request > 0 and row[-1] == "2"


def test_batching_speed_runs_on_a_tiny_budget(multi30k_slice, tmp_path):
    out = tmp_path / "batching_speed.md"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "batching_speed.py"), "--rounds", "1", "--max_steps", "2", "--out",
         str(out), "--", "--data_dir", str(multi30k_slice(train=200, validation=24, test=24)), *TINY],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    rows = [row for row in table_rows(out.read_text()) if row[0].startswith(("sentence", "token"))]
    assert [row[0].split(" (")[0] for row in rows] == ["sentence batches", "token batches"]
    assert all(float(row[2]) > 0 for row in rows)
