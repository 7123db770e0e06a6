"""Run in OpenNMT-py's own environment (.cache/opennmt-venv, see benchmarks/opennmt-requirements.txt): trains tiny
OpenNMT-py 3.5.1 RNN models as `onmt_build_vocab` + `onmt_train` do, decodes with `onmt_translate`, and computes
OpenNMT-py's own teacher-forced logits, for the tests of the OpenNMT-py importer.

    python tests/opennmt_worker.py train WORKDIR OPTIONS_JSON
        WORKDIR holds train.src, train.tgt, valid.src, valid.tgt (whitespace-tokenized, one sentence a line).
        Writes WORKDIR/config.yaml (OpenNMT's YAML; JSON text), the vocabularies vocab.src / vocab.tgt, and the
        checkpoint WORKDIR/model_step_N.pt (N = train_steps), whose path is the last line of stdout. OPTIONS_JSON
        (a JSON object, or a path to a file holding one) overrides the tiny defaults of TRAIN_DEFAULTS below;
        save_checkpoint_steps follows train_steps unless given. Equivalent shell commands:
            onmt_build_vocab -config WORKDIR/config.yaml -n_sample -1
            onmt_train -config WORKDIR/config.yaml

    python tests/opennmt_worker.py translate CHECKPOINT SRC_FILE OUT_FILE {greedy|beam} [EXTRA_ONMT_ARGS...]
        onmt_translate in-process with COMMON_TRANSLATE_ARGS + TRANSLATE_ARGS[mode] + EXTRA (printed to stderr);
        OUT_FILE gets one hypothesis a line (tokens before EOS). No -with_score: in 3.5.1 it raises AttributeError
        ('float' object has no attribute 'item') whenever BeamSearch runs; -verbose logs PRED SCORE / GOLD SCORE.

    python tests/opennmt_worker.py ids CHECKPOINT PAIRS_JSON OUT_JSON
        PAIRS_JSON: [[source, target], ...] (whitespace-tokenized text; target may be null). Numericalizes as
        OpenNMT's text_utils.numericalize does (source: its tokens only, no BOS/EOS; target: BOS + tokens + EOS;
        unknown tokens map to <unk>) and right-pads with the vocabulary's pad id. OUT_JSON: the BATCH_JSON that
        `logits` reads: {"src", "src_len", "tgt", "tgt_len", "specials": {"src": {...}, "tgt": {...}}}.

    python tests/opennmt_worker.py logits CHECKPOINT BATCH_JSON OUT_NPY [ATTN_NPY]
        BATCH_JSON: {"src": [[id, ...], ...], "src_len": [...], "tgt": [[id, ...], ...]} in OpenNMT's own ids,
        right-padded; tgt is the decoder input as given (starts with BOS; every position is fed). Loads the model as
        onmt_translate does (onmt.model_builder.load_test_model: eval mode, dropout off), runs the encoder,
        model.decoder.init_state as the translator does, the decoder over the whole tgt (teacher forcing) and
        model.generator (a plain nn.Linear in 3.5.1: the logits, log_softmax comes after it in the translator).
        Saves float32 logits (batch, tgt_len, vocab) with numpy.save(allow_pickle=False); with ATTN_NPY also the
        attention weights (batch, tgt_len, src_len) of the decoder's global attention.

    python tests/opennmt_worker.py job JOB_JSON
        All of the above for several models in one process (see job_command); what the tests run.

torch >= 2.6 loads with weights_only=True by default, which OpenNMT-py's loader (a plain torch.load of a pickled
argparse.Namespace) does not expect: this worker sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 for itself (the same
variable makes the onmt_* console scripts of the venv work).
"""

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import warnings  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning)  # torch.cuda.amp.custom_fwd in onmt/modules
warnings.filterwarnings("ignore", message=".*length penalty.*")

import numpy  # noqa: E402
import torch  # noqa: E402

# Tiny models: a second intra-op thread gains little, and spin-waiting threads slow down badly on shared CPUs.
torch.set_num_threads(1)

TRAIN_DEFAULTS = {
    "word_vec_size": 16,
    "hidden_size": 32,
    "layers": 1,
    "train_steps": 150,
    "batch_size": 32,
    "batch_type": "sents",
    "valid_steps": 100000,
    "valid_batch_size": 32,
    "report_every": 50,
    "seed": 1,
    "dropout": [0.1],
    "optim": "adam",
    "learning_rate": 0.01,
    "param_init": 0,  # Glorot (Xavier) initialisation instead of OpenNMT's uniform(-0.1, 0.1): tiny models leave
    "param_init_glorot": True,  # the unigram plateau sooner
    "num_workers": 0,  # no DataLoader worker processes: deterministic and cheap
    "keep_checkpoint": 1,
}

# onmt_translate's arguments beside -model/-src/-output. Defaults of 3.5.1 that matter: beam_size 5,
# random_sampling_topk 0 (0 with topp 0 means BeamSearch, even for beam_size 1), length_penalty "avg" with alpha 1,
# max_length 250, max_length_ratio 1.25 (max_length = min(max_length, padded src length of the batch * ratio + 5)),
# min_length 0, batch_size 30 sentences (length-sorted buckets of 16384), n_best 1.
COMMON_TRANSLATE_ARGS = [
    "-gpu", "-1", "-max_length", "100", "-max_length_ratio", "0", "-min_length", "0", "-n_best", "1"
]  # fmt: skip
TRANSLATE_ARGS = {
    # GreedySearch with keep_topk=1: argmax at each step (sample_with_temperature takes logits.topk(1)).
    # (length_penalty none only makes the reported score the summed log-probability instead of its average.)
    "greedy": ["-beam_size", "1", "-random_sampling_topk", "1", "-random_sampling_temp", "1.0", "-length_penalty", "none",
               "-alpha", "0"],  # fmt: skip
    # BeamSearch, hypotheses ranked by their summed log-probabilities (EOS included); stops an example when its top
    # beam ends in EOS.
    "beam": ["-beam_size", "5", "-length_penalty", "none", "-alpha", "0", "-coverage_penalty", "none", "-beta", "0"],
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_json(text_or_path: str):
    text_or_path = text_or_path.strip()
    if text_or_path[:1] in "{[":
        return json.loads(text_or_path)
    return json.loads(Path(text_or_path).read_text(encoding="utf-8"))


def train_command(workdir: str, options_json: str) -> None:
    from onmt.bin.build_vocab import _get_parser as build_vocab_parser
    from onmt.bin.build_vocab import build_vocab_main
    from onmt.bin.train import _get_parser as train_parser
    from onmt.bin.train import train

    work = Path(workdir).resolve()
    overrides = read_json(options_json)
    lines = sum(1 for _ in (work / "train.src").open(encoding="utf-8"))
    config = {
        "save_data": str(work / "run" / "sample"),
        "src_vocab": str(work / "vocab.src"),
        "tgt_vocab": str(work / "vocab.tgt"),
        "overwrite": True,
        "data": {
            "corpus_1": {"path_src": str(work / "train.src"), "path_tgt": str(work / "train.tgt")},
            "valid": {"path_src": str(work / "valid.src"), "path_tgt": str(work / "valid.tgt")},
        },
        "save_model": str(work / "model"),
        # A bucket is the whole (small) corpus: the default (262144 examples) would read it hundreds of times over.
        "bucket_size": lines,
        **TRAIN_DEFAULTS,
    }
    config.update(overrides)
    if isinstance(config.get("dropout"), (int, float)):
        config["dropout"] = [config["dropout"]]
    if "save_checkpoint_steps" not in overrides:
        config["save_checkpoint_steps"] = config["train_steps"]
    if config.get("share_vocab") and config.get("tgt_vocab") == str(work / "vocab.tgt"):
        config["tgt_vocab"] = config["src_vocab"]
    config_path = work / "config.yaml"
    config_path.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")  # JSON is YAML

    start = time.perf_counter()
    # onmt_build_vocab -config config.yaml -n_sample -1
    opts, _ = build_vocab_parser().parse_known_args(["-config", str(config_path), "-n_sample", "-1"])
    build_vocab_main(opts)
    # onmt_train -config config.yaml
    opt, _ = train_parser().parse_known_args(["-config", str(config_path)])
    train(opt)
    checkpoint = work / f"model_step_{config['train_steps']}.pt"
    if not checkpoint.is_file():
        raise SystemExit(f"onmt_train did not write {checkpoint}")
    log(f"trained in {time.perf_counter() - start:.1f} s")
    print(checkpoint)
    return str(checkpoint)


def translate_command(checkpoint: str, src: str, output: str, mode: str, *extra: str) -> None:
    from onmt.bin.translate import _get_parser, translate

    argv = ["-model", checkpoint, "-src", src, "-output", output, *COMMON_TRANSLATE_ARGS, *TRANSLATE_ARGS[mode], *extra]
    log("onmt_translate " + " ".join(argv))
    opt = _get_parser().parse_args(argv)
    start = time.perf_counter()
    translate(opt)
    log(f"translated in {time.perf_counter() - start:.1f} s")
    print(output)


def load_model(checkpoint: str):
    """The model as onmt_translate builds it (Translator.from_opt -> load_test_model)."""
    from onmt.bin.translate import _get_parser
    from onmt.model_builder import load_test_model
    from onmt.utils.parse import ArgumentParser

    opt = _get_parser().parse_args(["-model", checkpoint, "-src", os.devnull, "-gpu", "-1"])
    ArgumentParser.validate_translate_opts(opt)
    vocabs, model, model_opt = load_test_model(opt)
    model.eval()
    return vocabs, model, model_opt


def specials(vocab) -> dict:
    from onmt.constants import DefaultTokens

    return {
        name: vocab.lookup_token(token)
        for name, token in (
            ("unk", DefaultTokens.UNK), ("pad", DefaultTokens.PAD), ("bos", DefaultTokens.BOS), ("eos", DefaultTokens.EOS),
        )  # fmt: skip
    }


def ids_command(checkpoint: str, pairs_json: str, out_json: str) -> None:
    from onmt.constants import DefaultTokens

    vocabs, _, _ = load_model(checkpoint)
    start_token = vocabs.get("decoder_start_token", DefaultTokens.BOS)
    src_vocab, tgt_vocab = vocabs["src"], vocabs["tgt"]
    src_pad, tgt_pad = src_vocab.lookup_token(DefaultTokens.PAD), tgt_vocab.lookup_token(DefaultTokens.PAD)
    sources, targets = [], []
    for source, target in read_json(pairs_json):
        sources.append(src_vocab(source.split(" ")))  # as text_utils.numericalize: str.split(" ")
        if target is not None:
            targets.append(tgt_vocab([start_token, *target.split(" "), DefaultTokens.EOS]))
    src_width = max(map(len, sources))
    batch = {
        "src": [ids + [src_pad] * (src_width - len(ids)) for ids in sources],
        "src_len": [len(ids) for ids in sources],
        "specials": {"src": specials(src_vocab), "tgt": specials(tgt_vocab)},
    }
    if targets:
        tgt_width = max(map(len, targets))
        batch["tgt"] = [ids + [tgt_pad] * (tgt_width - len(ids)) for ids in targets]
        batch["tgt_len"] = [len(ids) for ids in targets]
    Path(out_json).write_text(json.dumps(batch) + "\n", encoding="utf-8")
    print(out_json)


def logits_command(checkpoint: str, batch_json: str, out_npy: str, attn_npy: str = None) -> None:
    _, model, model_opt = load_model(checkpoint)
    batch = read_json(batch_json)
    src = torch.tensor(batch["src"], dtype=torch.long).unsqueeze(-1)  # (batch, src_len, nfeats=1)
    src_len = torch.tensor(batch["src_len"], dtype=torch.long)
    tgt = torch.tensor(batch["tgt"], dtype=torch.long).unsqueeze(-1)  # (batch, tgt_len, nfeats=1)
    start = time.perf_counter()
    with torch.no_grad():
        # As Translator._run_encoder / _translate_batch_with_strategy, then a whole-target decoder pass as
        # Translator._score_target (without its log_softmax).
        enc_out, enc_final_hs, src_len = model.encoder(src, src_len)
        model.decoder.init_state(src, enc_out, enc_final_hs)
        dec_out, attns = model.decoder(tgt, enc_out, src_len=src_len)
        logits = model.generator(dec_out)
    log(f"logits in {time.perf_counter() - start:.3f} s")
    numpy.save(out_npy, logits.float().numpy(), allow_pickle=False)
    if attn_npy:
        from onmt.decoders.decoder import InputFeedRNNDecoder

        attn = attns["std"]
        if isinstance(model.decoder, InputFeedRNNDecoder):
            attn = attn.transpose(0, 1)  # its steps are stacked first: (tgt_len, batch, src_len)
        numpy.save(attn_npy, attn.float().numpy(), allow_pickle=False)
    print(out_npy)


def segmenter(transform: str, model_path: str):
    """text -> text as OpenNMT's subword transform segments it (onmt/transforms/tokenize.py)."""
    if transform == "sentencepiece":
        import sentencepiece

        processor = sentencepiece.SentencePieceProcessor(model_file=model_path)
        return lambda text: " ".join(processor.encode(text, out_type=str))
    from subword_nmt.apply_bpe import BPE

    with open(model_path, encoding="utf-8") as codes:
        bpe = BPE(codes=codes)
    return lambda text: " ".join(bpe.segment_tokens(text.split(" ")))


def learn_subwords(job: dict) -> None:
    """The subword models the job's models use: {"sentencepiece": {"input", "prefix", "vocab_size"}} trains
    PREFIX.model, {"bpe": {"input", "codes", "merges"}} learns subword-nmt codes."""
    if "sentencepiece" in job:
        import sentencepiece

        spm = job["sentencepiece"]
        sentencepiece.SentencePieceTrainer.train(
            input=spm["input"], model_prefix=spm["prefix"], vocab_size=spm["vocab_size"], model_type="unigram",
            character_coverage=1.0, num_threads=1, minloglevel=2,
        )  # fmt: skip
    if "bpe" in job:
        from subword_nmt.learn_bpe import learn_bpe

        with open(job["bpe"]["input"], encoding="utf-8") as text, open(job["bpe"]["codes"], "w", encoding="utf-8") as out:
            learn_bpe(text, out, job["bpe"]["merges"])


def job_command(job_json: str) -> None:
    """Every model of JOB_JSON in one process (one start-up of torch and onmt):
    {"sentencepiece": ..., "bpe": ... (optional, see learn_subwords), "models": [{"workdir", "options",
    "train_only"?}], "test_src": path, "pairs": PAIRS_JSON path}.
    In each workdir: the checkpoint, greedy.txt and beam.txt (onmt_translate of test_src, with the model's subword
    transform: its output detokenized), batch.json and logits.npy (of the pairs, segmented first as the model's
    subword transform segments)."""
    job = read_json(job_json)
    learn_subwords(job)
    for model in job["models"]:
        work = Path(model["workdir"])
        checkpoint = train_command(str(work), json.dumps(model["options"]))
        if model.get("train_only"):
            continue
        options, pairs, transform_args = model["options"], job["pairs"], []
        subword = [name for name in options.get("transforms", []) if name in ("sentencepiece", "bpe")]
        if subword:
            # onmt_translate applies the transforms its own command line names, not the checkpoint's.
            transform_args = ["-transforms", subword[0], "-src_subword_model", options["src_subword_model"],
                              "-tgt_subword_model", options["tgt_subword_model"]]  # fmt: skip
            segment = segmenter(subword[0], options["src_subword_model"])
            pairs = str(work / "segmented_pairs.json")
            Path(pairs).write_text(json.dumps([[segment(text) for text in pair] for pair in read_json(job["pairs"])]))
        for mode in ("greedy", "beam"):
            translate_command(checkpoint, job["test_src"], str(work / f"{mode}.txt"), mode, *transform_args)
        ids_command(checkpoint, pairs, str(work / "batch.json"))
        logits_command(checkpoint, str(work / "batch.json"), str(work / "logits.npy"))


COMMANDS = {
    "train": train_command,
    "translate": translate_command,
    "ids": ids_command,
    "logits": logits_command,
    "job": job_command,
}


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        raise SystemExit(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    main()
