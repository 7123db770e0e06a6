"""Run in eole's own environment (.cache/eole-venv, benchmarks/eole-requirements.txt): trains tiny `architecture: rnn`
models as `eole build_vocab` and `eole train` do, decodes with `eole predict`, and computes eole's own logits for a
padded batch. Imports only eole, torch, numpy and the standard library.

    .cache/eole-venv/bin/python tests/eole_worker.py train WORKDIR OPTIONS_JSON
    .cache/eole-venv/bin/python tests/eole_worker.py predict MODEL_DIR SRC_FILE OUT_FILE greedy|beam [MAX_LENGTH]
    .cache/eole-venv/bin/python tests/eole_worker.py logits MODEL_DIR BATCH_JSON OUT_NPY
    .cache/eole-venv/bin/python tests/eole_worker.py job JOB_JSON   (what the tests run: see job())

train: WORKDIR holds train.src, train.tgt, valid.src, valid.tgt (one sentence a line, tokens separated by single
spaces; eole splits on " " and adds no BOS/EOS to the source). Writes WORKDIR/config.yaml (JSON, which is YAML),
runs `eole build_vocab -config config.yaml -n_sample -1` then `eole train -config config.yaml` (logs in
WORKDIR/build_vocab.log, WORKDIR/train.log) and prints the saved model folder (WORKDIR/model: config.json,
vocab.json, model.00.safetensors, optimizer.pt, symlinks into WORKDIR/model/step_N/) as the last stdout line.
OPTIONS_JSON (a JSON object, inline or a path to a .json file) is merged recursively into eole's own config, in
eole's own nesting (see DEFAULTS below): top-level data/vocab keys (share_vocab, seed, ...), "model": {...} (model
level: architecture, hidden_size, layers, rnn_type, bridge, input_feed, share_embeddings, share_decoder_embeddings,
generator_bias; "embeddings": {word_vec_size, position_encoding_type, ...}; "encoder": {...}; "decoder":
{global_attention, coverage_attn, context_gate, ...}), and "training": {...}.
`architecture: rnn` forces encoder_type "rnn" (unidirectional); a bidirectional encoder needs
{"model": {"architecture": "custom", "encoder": {"encoder_type": "brnn", "rnn_type": ...}, "decoder":
{"decoder_type": "rnn", "rnn_type": ...}}} (rnn_type and bridge then go into encoder/decoder, not the model level).
null is passed on as null (e.g. {"model": {"embeddings": {"position_encoding_type": null}}} turns off the sinusoidal
position encoding that eole otherwise adds to RNN embeddings). The default word_vec_size 16 overrides
src_word_vec_size/tgt_word_vec_size: give "word_vec_size": -1 with them. eole 0.6.4 itself fails to train: brnn with
bridge (shape error), input_feed 0 with context_gate or without attention (view error), global_attention_function
sparsemax, an odd word_vec_size while the position encoding is on.

predict: `eole predict` with the command lines of PREDICT_ARGS (deterministic greedy, or beam 5 without length
penalty), one sentence a batch (eole's RNN encoder does not pack, so padding would change its results), the length
cap fixed at MAX_LENGTH (default 100) tokens instead of eole's default of min(250, 2 * padded source length + 5).

logits: BATCH_JSON {"src": [[ids]], "src_len": [...], "tgt": [[ids]]}: eole vocabulary ids, right-padded with the pad
id; tgt starts with the decoder start token (BOS). Loads the model as `eole predict` does (PredictConfig, the model
class's for_inference, eval mode), runs the source embeddings and the encoder, initialises the decoder state as the
Translator does (decoder.init_state(enc_out=..., enc_final_hs=...)), runs the decoder teacher-forced over all of tgt
with the attention mask of the Translator (sequence_mask(src_len)), and saves the generator's output (logits before
log-softmax), (batch, tgt_len, vocab) float32, with numpy.save (no pickle).
"""

import copy
import json
import os
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Tiny trainings on a shared 2-core machine: torch's default of one thread per core oversubscribes it (8x slower).
THREADS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
os.environ.update(THREADS_ENV)
# The models of a job train side by side, one per core of CI's 2-core machine.
PARALLEL_MODELS = 2
# eole warns on import about its optional CUDA/C++ extensions and flash-attn (not needed on CPU).
warnings.filterwarnings("ignore", message="Could not import")

# eole's own config nesting (keys eole does not know are refused by its pydantic config).
DEFAULTS = {
    "seed": 1,
    "overwrite": True,
    "report_every": 50,
    "data": {
        "corpus_1": {"path_src": "train.src", "path_tgt": "train.tgt"},
        "valid": {"path_src": "valid.src", "path_tgt": "valid.tgt"},
    },
    "model": {
        "architecture": "rnn",  # eole's defaults for rnn: LSTM, global_attention general, input_feed 1, no bridge
        "embeddings": {"word_vec_size": 16},
        "hidden_size": 32,
        "layers": 1,
    },
    "training": {
        "train_steps": 400,  # at 150, unidirectional models said one sentence for every source
        "valid_steps": 400,
        "save_checkpoint_steps": 400,
        "batch_size": 32,
        "batch_type": "sents",
        # eole's default optimizer (sgd, learning_rate 1.0, max_grad_norm 5): adam (0.002 to 0.01) learnt only "a a a".
        "dropout": [0.0],
        "world_size": 1,
        "gpu_ranks": [],  # CPU
        # eole's default bucket (262144 examples) cycles a few hundred lines for minutes before the first batch.
        "bucket_size": 2048,
        "num_workers": 0,
        "prefetch_factor": 2,
    },
}

# `eole predict` options for the two decodings. Without top_k/top_p eole always runs BeamSearch (beam_size 1
# included); top_k 1 selects GreedySearch with argmax (sample_with_temperature: top_k == 1 -> logits.topk(1)).
# Defaults that matter: length_penalty avg (alpha 1.0), max_length 250 capped at 2 * padded source length + 5
# (max_length_ratio 2), batch_size 30 sentences, no sampling (top_k 0, top_p 0).
PREDICT_ARGS = {
    "greedy": ["-beam_size", "1", "-top_k", "1"],
    "beam": ["-beam_size", "5", "-length_penalty", "none"],
}


def merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def eole(*args: str, cwd: Path, log: Path) -> None:
    command = [sys.executable, "-m", "eole.bin.main", *args]
    with open(log, "w", encoding="utf-8") as out:
        result = subprocess.run(
            command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **THREADS_ENV}
        )
    if result.returncode != 0:
        sys.stderr.write(log.read_text(encoding="utf-8")[-5000:])
        raise SystemExit(f"{' '.join(command)} failed with exit status {result.returncode} (log: {log})")


def train(workdir: str, options: str) -> None:
    work = Path(workdir).resolve()
    text = Path(options).read_text(encoding="utf-8") if os.path.isfile(options) else options
    config = merge(DEFAULTS, json.loads(text or "{}"))
    config.setdefault("save_data", str(work / "run"))
    config.setdefault("src_vocab", str(work / "run" / "vocab.src"))
    if not config.get("share_vocab"):
        config.setdefault("tgt_vocab", str(work / "run" / "vocab.tgt"))
    config["training"].setdefault("model_path", str(work / "model"))
    for corpus in config["data"].values():
        for key in ("path_src", "path_tgt"):
            if corpus.get(key):
                corpus[key] = str(work / corpus[key])
    (work / "config.yaml").write_text(json.dumps(config, indent=2), encoding="utf-8")
    eole("build_vocab", "-config", "config.yaml", "-n_sample", "-1", cwd=work, log=work / "build_vocab.log")
    eole("train", "-config", "config.yaml", cwd=work, log=work / "train.log")
    model_dir = Path(config["training"]["model_path"])
    for name in ("config.json", "vocab.json", "model.00.safetensors"):
        if not (model_dir / name).exists():
            raise SystemExit(f"eole train saved no {name} in {model_dir}")
    print(model_dir)
    return model_dir


def predict(model_dir: str, src: str, output: str, mode: str, max_length: str = "100") -> None:
    out = Path(output).resolve()
    eole(
        "predict", "-model_path", str(Path(model_dir).resolve()), "-src", str(Path(src).resolve()), "-output", str(out),
        *PREDICT_ARGS[mode], "-batch_size", "1", "-max_length_ratio", "0", "-max_length", max_length, "-seed", "1",
        cwd=out.parent, log=out.with_name(out.name + ".log"),
    )  # fmt: skip
    print(out)


def logits(model_dir: str, batch_json: str, out_npy: str) -> None:
    import numpy
    import torch
    from eole.config.run import PredictConfig
    from eole.models.model import get_model_class
    from eole.utils.misc import sequence_mask

    torch.set_num_threads(1)
    batch = json.loads(Path(batch_json).read_text(encoding="utf-8"))
    # As `eole predict` (eole.predict._load_local_eole_model): the config read back from config.json, then weights.
    config = PredictConfig(model_path=[str(Path(model_dir).resolve())], src="-")
    model, vocabs, _ = get_model_class(config.model).for_inference(config, device_id=0)
    model.eval()  # for_inference already sets eval mode and zeroes the embeddings' dropout
    src = torch.tensor(batch["src"], dtype=torch.long)
    src_len = torch.tensor(batch["src_len"], dtype=torch.long)
    tgt = torch.tensor(batch["tgt"], dtype=torch.long)
    tgt_pad = vocabs["tgt"][vocabs["specials"].get("pad_token", "<blank>")]
    with torch.no_grad():
        # eole.predict.translator.Translator._run_encoder
        src_pad_mask = src.eq(model.src_emb.word_padding_idx).unsqueeze(1)
        enc_out, enc_final_hs = model.encoder(model.src_emb(src), pad_mask=src_pad_mask)
        # Translator._predict_batch_with_strategy
        model.decoder.init_state(enc_out=enc_out, enc_final_hs=enc_final_hs)
        # Inference._decode_and_generate, all target positions at once (positions 0.. as its steps 0..)
        dec_out, _ = model.decoder(
            model.tgt_emb(tgt),
            enc_out=enc_out,
            src_pad_mask=sequence_mask(src_len, enc_out.size(1)).unsqueeze(1),
            tgt_pad_mask=tgt.eq(tgt_pad).unsqueeze(1),
        )
        scores = model.generator(dec_out)
    numpy.save(out_npy, scores.float().numpy(), allow_pickle=False)
    print(out_npy)


def job(job_json: str) -> None:
    """For each of JOB_JSON's {"models": [{"workdir", "options"}], "test_src": path, "pairs": [[source, target], ...]}:
    train, then in the workdir greedy.txt and beam.txt (`eole predict` of test_src) and, for each pair alone (eole's
    encoder does not pack: padding would change its results), pair_N.json (eole's ids) and pair_N.npy (logits).
    PARALLEL_MODELS models at a time: each eole command is a process of its own (its own seed), one thread each."""
    spec = json.loads(Path(job_json).read_text(encoding="utf-8"))
    with ThreadPoolExecutor(max_workers=PARALLEL_MODELS) as pool:
        for done in [pool.submit(model_job, entry, spec) for entry in spec["models"]]:
            done.result()  # re-raises a failed model's error


def model_job(entry: dict, spec: dict) -> None:
    work = Path(entry["workdir"])
    model_dir = train(str(work), json.dumps(entry["options"]))
    for mode in ("greedy", "beam"):
        predict(str(model_dir), spec["test_src"], str(work / f"{mode}.txt"), mode)
    vocab = json.loads((model_dir / "vocab.json").read_text(encoding="utf-8"))
    specials = vocab["specials"]
    for number, (source, target) in enumerate(spec["pairs"]):
        ids = {}
        for side, words in (("src", source.split(" ")),
                            ("tgt", [vocab["decoder_start_token"], *target.split(" "), specials["eos_token"]])):
            lookup = {token: i for i, token in enumerate(vocab[side])}
            ids[side] = [lookup.get(word, lookup[specials["unk_token"]]) for word in words]
        batch = {"src": [ids["src"]], "src_len": [len(ids["src"])], "tgt": [ids["tgt"]]}
        (work / f"pair_{number}.json").write_text(json.dumps(batch), encoding="utf-8")
        logits(str(model_dir), str(work / f"pair_{number}.json"), str(work / f"pair_{number}.npy"))


if __name__ == "__main__":
    commands = {"train": train, "predict": predict, "logits": logits, "job": job}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        raise SystemExit(__doc__)
    commands[sys.argv[1]](*sys.argv[2:])
