"""JoeyNMT 2.3 and this package side by side, in one run on one machine: training throughput and beam-5
translation speed with the same data, segmentation, model, batches and, for translation, the very same weights.

Both read Multi30k de→en segmented by one joint BPE tokenizer (ours): JoeyNMT gets the BPE pieces as
space-separated words (`level: word`) with the same vocabulary, so both train on identical token sequences and count
the same target tokens (non-padding, EOS included). JoeyNMT's model: embeddings 256 (one table for both sides),
bidirectional GRU encoder 512 per direction, GRU decoder 512, its "bahdanau" attention with input feeding, a bridge,
dropout 0.1, Adam, batches of 128 sentences. Ours is configured to compute exactly that (`luong_concat` attention,
which is JoeyNMT's order, without the query bias; a 512-wide attentional vector and an untied output layer; one bridge
state for all layers): the parameter counts in the table are equal.

Training: JoeyNMT runs `--updates` steps and logs non-padding target tokens/s every `--logging_freq` steps (the
first window, with its warm-up, is left out); ours runs `train.py` for the same steps (Trainer loop: data loading,
clipping, scheduler and logging included, warm-up included) and reports the same count per second. Once with
JoeyNMT's model, and once with our fast path (Luong `general`, no input feeding: one fused GRU call per layer over
the whole target; a different model, for reference).

Translation: the first `--test_sentences` test sentences with beam 5, batch 64 and exactly `--max_output_length`
decoding steps (EOS held back until then: JoeyNMT's `min_output_length`; for ours a logits processor that sets the
EOS score to -inf in place, as JoeyNMT does, where transformers' `min_new_tokens` copies the scores twice a step), so
both do the same decoding work whatever their briefly trained models would stop at (JoeyNMT: `joeynmt test`, its own
"Generation took" time; ours: `translate()`, the path of the translate command, timed around the call). JoeyNMT's
trained checkpoint, imported with `hf-rnn-seq2seq-import-joeynmt`, is translated by ours too: the same weights doing
the same work, in float32 and in bfloat16 (the weights loaded with `dtype=torch.bfloat16`). The mean output length
is reported beside the speed (JoeyNMT's is read from its hypotheses file, after its post-processing; its log shows
min_output_length = max_output_length), and the test BLEU (sacreBLEU) of
each row's translations: with so brief a training it is low, and what it shows is whether the imported weights
translate alike in float32 and bfloat16 (JoeyNMT's BPE pieces and the imported model's are joined to text by our
tokenizer first). JoeyNMT's own BLEU is not comparable under the forced length: its hypotheses file holds fewer
tokens than it decoded.

JoeyNMT runs in its own virtual environment (`--joeynmt_venv`, made from `benchmarks/joeynmt-requirements.txt`
by .ci/run, or by the command that file names). Run alone: a concurrent torch job slows both.

    python benchmarks/joeynmt_side_by_side.py --out benchmarks/results/joeynmt_side_by_side.md
"""

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import REPO, add_corpus_argument, emit, machine

from hf_rnn_seq2seq.configuration_rnn_seq2seq import VOCAB_SIZE
from hf_rnn_seq2seq.metrics import load_metric
from hf_rnn_seq2seq.text_files import normalize
from hf_rnn_seq2seq.translation import BATCH_SIZE, NUM_BEAMS

JOEYNMT_REQUIREMENTS = REPO / "benchmarks" / "joeynmt-requirements.txt"
JOEYNMT = "JoeyNMT 2.3, Bahdanau + input feeding"
IMPORTED = "ours, JoeyNMT's trained weights imported"
SPECIALS = ["<unk>", "<pad>", "<s>", "</s>"]  # JoeyNMT's special tokens (ids 0-3)


def joeynmt_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        raise SystemExit(
            f"JoeyNMT's environment {venv} is missing: make it with `python3 -m venv {venv} && "
            f"{venv}/bin/pip install -r {JOEYNMT_REQUIREMENTS}` (.ci/run does)"
        )
    return python


def write_segmented_corpus(args, work: Path) -> dict:
    """Our tokenizer, and the corpus as its pieces joined by spaces (JoeyNMT's input), plus the vocabulary file."""
    from hf_rnn_seq2seq.data import load_parallel_dir
    from hf_rnn_seq2seq.tokenization import train_bpe_tokenizer

    splits = load_parallel_dir(args.data_dir, "de", "en", splits=["train", "validation", "test"])
    pairs = {name: [(row["de"], row["en"]) for row in split["translation"]] for name, split in splits.items()}
    pairs["train"] = pairs["train"][: args.train_pairs]
    pairs["validation"] = pairs["validation"][: args.dev_sentences]
    pairs["test"] = pairs["test"][: args.test_sentences]
    tokenizer = train_bpe_tokenizer([s for pair in pairs["train"] for s in pair], vocab_size=args.vocab_size)
    tokenizer.save_pretrained(work / "tokenizer")
    corpus = work / "corpus"
    corpus.mkdir(exist_ok=True)
    for split, stem in (("train", "train"), ("validation", "dev"), ("test", "test")):
        for side, lang in enumerate(("de", "en")):
            lines = [" ".join(tokenizer.tokenize(pair[side])) for pair in pairs[split]]
            (corpus / f"{stem}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    pieces = [token for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])]
    (corpus / "vocab.txt").write_text("\n".join(p for p in pieces if p not in tokenizer.all_special_tokens) + "\n")
    labels = tokenizer(text_target=[en for _, en in pairs["train"]])["input_ids"]
    return {"tokenizer": tokenizer, "pairs": pairs, "epoch_target_tokens": sum(map(len, labels))}


def joeynmt_config(args, work: Path) -> str:
    corpus = work / "corpus"
    side = f"""
        level: word
        lowercase: False
        voc_file: {corpus / "vocab.txt"}
        voc_limit: {args.vocab_size + 10}
        voc_min_freq: 1
        max_length: 128"""
    return f"""
name: side_by_side
joeynmt_version: "2.3.0"
use_cuda: False
data:
    train: {corpus / "train"}
    dev: {corpus / "dev"}
    test: {corpus / "test"}
    dataset_type: plain
    src:
        lang: de{side}
    trg:
        lang: en{side}
testing:
    n_best: 1
    beam_size: {NUM_BEAMS}
    beam_alpha: 1.0
    batch_size: {BATCH_SIZE}
    batch_type: sentence
    max_output_length: {args.max_output_length}
    min_output_length: {args.max_output_length}
    eval_metrics: [bleu]
training:
    random_seed: 42
    optimizer: adam
    learning_rate: 0.001
    scheduling: exponential  # constant with decrease_factor 1 (its plateau scheduler fails under torch 2.13)
    decrease_factor: 1.0
    clip_grad_norm: 1.0
    batch_size: {args.batch_size}
    batch_type: sentence
    eval_batch_size: 64
    eval_batch_type: sentence
    updates: {args.updates}
    epochs: 1000
    logging_freq: {args.logging_freq}
    validation_freq: {args.updates}
    eval_metric: [bleu]
    early_stopping_metric: bleu
    model_dir: {work / "joeynmt_model"}
    overwrite: True
    shuffle: True
    use_cuda: False
    print_valid_sents: []
    keep_best_ckpts: 1
model:
    initializer: xavier_uniform
    embed_initializer: normal
    embed_init_weight: 0.1
    bias_initializer: zeros
    init_rnn_orthogonal: False
    tied_embeddings: True
    encoder:
        type: recurrent
        rnn_type: gru
        embeddings:
            embedding_dim: {args.embedding_dim}
        hidden_size: {args.hidden_size}
        bidirectional: True
        num_layers: 1
        dropout: 0.1
    decoder:
        type: recurrent
        rnn_type: gru
        embeddings:
            embedding_dim: {args.embedding_dim}
        hidden_size: {args.hidden_size}
        attention: bahdanau
        input_feeding: True
        init_hidden: bridge
        num_layers: 1
        dropout: 0.1
"""


def timed(command: list[str], cwd: Path, stdin=None) -> tuple[subprocess.CompletedProcess, float]:
    """Run `command` under /usr/bin/time (peak RSS in MiB), reading the open file `stdin` if given, failing loudly with
    its output."""
    result = subprocess.run(["/usr/bin/time", "-f", "MAXRSS_KB %M", *command], cwd=cwd, capture_output=True, text=True,
                            stdin=stdin)  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    peak_kb = int(re.findall(r"MAXRSS_KB (\d+)", result.stderr)[-1])
    return result, peak_kb / 1024


def run_joeynmt(args, work: Path, python: Path) -> dict:
    config = work / "joeynmt.yaml"
    config.write_text(joeynmt_config(args, work))
    train, train_mib = timed([str(python), "-m", "joeynmt", "train", str(config), "--skip-test"], work)
    log = (work / "joeynmt_model" / "train.log").read_text()
    windows = [float(x) for x in re.findall(r"Tokens per Sec:\s+(\d+)", log)]
    if len(windows) < 2:
        raise RuntimeError(f"JoeyNMT logged {len(windows)} throughput windows; raise --updates / lower --logging_freq")
    parameters = int(re.search(r"Total params: (\d+)", log).group(1))
    test, test_mib = timed(
        [str(python), "-m", "joeynmt", "test", str(config), "-o", str(work / "joeynmt_hyps")], work
    )
    durations = re.findall(r"Generation took ([\d.]+)\[sec\]", test.stderr + test.stdout)
    hypotheses = (work / "joeynmt_hyps.test").read_text(encoding="utf-8").splitlines()
    return {
        "parameters": parameters,
        "tokens_per_second": sum(windows[1:]) / len(windows[1:]),
        "train_peak_mib": train_mib,
        "translate_seconds": float(durations[-1]),  # the last decoded set is the test set
        "translate_peak_mib": test_mib,
        "output_tokens": sum(len(h.split()) for h in hypotheses) / len(hypotheses),
        "sentences": len(hypotheses),
        "pieces": hypotheses,
    }


def translation_speed(args, folder: Path, sentences: list[str], work: Path, dtype: str = "float32") -> dict:
    """Our beam-5 translation of `sentences` with `folder`'s model computing in `dtype`, in a fresh process (its own
    peak memory)."""
    sentences_file = work / f"{folder.name}-sentences.json"
    sentences_file.write_text(json.dumps(sentences), encoding="utf-8")
    translated, _ = timed(
        [sys.executable, str(REPO / "benchmarks" / "fixed_length_translation.py"), str(folder),
         str(args.max_output_length), str(sentences_file), dtype],
        work,
    )  # fmt: skip
    translation = json.loads(translated.stdout.strip().splitlines()[-1])
    return {
        "translate_seconds": translation["seconds"],
        "translate_peak_mib": translation["peak_mib"],
        "output_tokens": translation["output_tokens"],
        "sentences": len(sentences),
        "translations": translation["translations"],
    }


def parameter_count(folder: Path) -> int:
    from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration

    config = json.loads((folder / "config.json").read_text())
    with torch.device("meta"):
        return RNNSeq2SeqForConditionalGeneration(RNNSeq2SeqConfig(**config)).num_parameters()


def run_imported(args, work: Path) -> dict[str, dict]:
    """JoeyNMT's trained checkpoint imported, translating the same segmented test sentences JoeyNMT translated, in
    float32 and in bfloat16: rows by name."""
    from hf_rnn_seq2seq.joeynmt import import_joeynmt

    folder = import_joeynmt(work / "joeynmt.yaml", work / "joeynmt_model" / "best.ckpt", work / "ours_imported")
    sentences = (work / "corpus" / "test.de").read_text(encoding="utf-8").splitlines()
    rows = {}
    for dtype, name in (("float32", IMPORTED), ("bfloat16", f"{IMPORTED}, bfloat16")):
        translation = translation_speed(args, folder, sentences, work, dtype)
        translation["pieces"] = translation.pop("translations")  # word-level model: its output is BPE pieces
        rows[name] = {"parameters": parameter_count(folder), **translation}
    return rows


def test_bleu(row: dict, corpus: dict) -> float:
    """sacreBLEU of a row's test translations; BPE pieces joined by spaces (JoeyNMT's, the imported model's) are
    joined to text by our tokenizer first."""
    tokenizer = corpus["tokenizer"]
    texts = row.get("translations") or [tokenizer.convert_tokens_to_string(line.split()) for line in row["pieces"]]
    references = [normalize(en) for _, en in corpus["pairs"]["test"]]
    return load_metric().compute(predictions=[normalize(text) for text in texts], references=references)["bleu"]


def run_ours(args, work: Path, name: str, model_flags: list[str], corpus: dict) -> dict:
    out = work / f"ours_{name}"
    command = [
        sys.executable, str(REPO / "train.py"), "--data_dir", args.data_dir, "--output_dir", str(out),
        "--tokenizer_name", str(work / "tokenizer"), "--max_train_samples", str(args.train_pairs),
        "--embedding_dim", str(args.embedding_dim), "--hidden_size", str(args.hidden_size),
        "--encoder_hidden_size", str(args.hidden_size), "--dropout", "0.1", "--label_smoothing", "0",
        "--learning_rate", "1e-3", "--warmup_steps", "0", "--lr_scheduler_type", "constant",
        "--per_device_train_batch_size", str(args.batch_size), "--max_steps", str(args.updates),
        "--logging_steps", str(args.logging_freq), "--do_train", "--eval_strategy", "no", "--save_strategy", "no",
        "--disable_tqdm", "true", "--seed", "42", *model_flags,
    ]  # fmt: skip
    _, train_mib = timed(command, work)
    results = json.loads((out / "train_results.json").read_text())
    return {
        "parameters": parameter_count(out),
        "tokens_per_second": results["train_target_tokens_per_second"],
        "train_peak_mib": train_mib,
        **translation_speed(args, out, [de for de, _ in corpus["pairs"]["test"]], work),
    }


def figures(rows: dict[str, dict]) -> dict[str, dict]:
    """The rows without their translations, for the log."""
    return {
        name: {key: value for key, value in row.items() if not isinstance(value, list)} for name, row in rows.items()
    }


def results_table(rows: dict[str, dict], corpus: dict, args, arguments: list[str]) -> list[str]:
    """The Markdown table of every system's figures, with the command and the machine above it."""
    joey = rows[JOEYNMT]
    lines = [
        f"Command: `python benchmarks/joeynmt_side_by_side.py {' '.join(arguments)}`  ",
        f"Machine: {machine()}, torch {torch.__version__} ({torch.get_num_threads()} threads); "
        f"date {time.strftime('%Y-%m-%d %H:%M')}  ",
        f"Data: Multi30k de→en, first {len(corpus['pairs']['train'])} training pairs, one joint BPE {args.vocab_size} "
        f"segmentation for both ({corpus['epoch_target_tokens']:,} target tokens an epoch); batches of "
        f"{args.batch_size} sentences; {args.updates} updates each; translation of {joey['sentences']} test "
        f"sentences, beam {NUM_BEAMS}, batch {BATCH_SIZE}, {args.max_output_length} decoding steps for "
        "both",
        "",
        "| system | parameters | train target tok/s | × JoeyNMT | s/epoch | train peak MiB | "
        f"beam-{NUM_BEAMS} sent/s | × JoeyNMT | mean output tokens | translate peak MiB | test BLEU |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in rows.items():
        sentences_per_second = row["sentences"] / row["translate_seconds"]
        training = "| — | — | — | — |"  # the imported weights were trained by JoeyNMT
        if "tokens_per_second" in row:
            training = (
                f"| {row['tokens_per_second']:.0f} | {row['tokens_per_second'] / joey['tokens_per_second']:.2f} | "
                f"{corpus['epoch_target_tokens'] / row['tokens_per_second']:.0f} | {row['train_peak_mib']:.0f} |"
            )
        lines.append(
            f"| {name} | {row['parameters']:,} {training} "
            f"{sentences_per_second:.1f} | {sentences_per_second / (joey['sentences'] / joey['translate_seconds']):.2f} | "
            f"{row['output_tokens']:.1f} | {row['translate_peak_mib']:.0f} | {test_bleu(row, corpus):.2f} |"
        )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_corpus_argument(parser)
    parser.add_argument("--work_dir", default=str(REPO / ".cache" / "joeynmt_side_by_side"))
    parser.add_argument("--joeynmt_venv", default=str(REPO / ".cache" / "joeynmt-venv"))
    parser.add_argument("--vocab_size", type=int, default=VOCAB_SIZE)
    parser.add_argument("--embedding_dim", type=int, default=256)
    parser.add_argument("--hidden_size", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--updates", type=int, default=100, help="training steps of each toolkit")
    parser.add_argument("--logging_freq", type=int, default=10)
    parser.add_argument("--train_pairs", type=int, default=29000)
    parser.add_argument("--dev_sentences", type=int, default=32)
    parser.add_argument("--test_sentences", type=int, default=1000)
    parser.add_argument("--max_output_length", type=int, default=30)
    parser.add_argument("--out", help="write the results table (Markdown) here")
    args = parser.parse_args(argv)

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    python = joeynmt_python(Path(args.joeynmt_venv))
    corpus = write_segmented_corpus(args, work)
    rows = {JOEYNMT: run_joeynmt(args, work, python)}
    print(figures(rows), file=sys.stderr)
    rows.update(run_imported(args, work))
    joeynmt_model = [
        "--attention_type", "luong_concat", "--attention_query_bias", "false", "--input_feeding", "true",
        "--attention_hidden_size", str(args.hidden_size), "--attentional_size", str(args.hidden_size),
        "--tie_word_embeddings", "false", "--shared_bridge", "true",
    ]  # fmt: skip
    rows["ours, JoeyNMT's model trained"] = run_ours(args, work, "joeynmt_model", joeynmt_model, corpus)
    rows["ours, Luong general (fast path, another model)"] = run_ours(
        args, work, "luong", ["--attention_type", "luong_general", "--input_feeding", "false"], corpus
    )
    print(figures(rows), file=sys.stderr)

    emit(results_table(rows, corpus, args, argv if argv is not None else sys.argv[1:]), args.out)


if __name__ == "__main__":
    main()
