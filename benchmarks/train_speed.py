"""Training throughput on real Multi30k batches: non-padding target tokens per second, seconds per epoch, peak
memory and achieved FLOP/s against the machine's measured float32 matmul peak.

Each configuration runs at the anchor's size and at train.py's default (`--sizes`), each in its own process (so
that peak memory is its own) on the same batches: Multi30k German→English, joint BPE, `--batch_size` sentences per
batch, grouped by length as the trainer does (`train_sampling_strategy="group_by_length"`, by the longer side of each
pair), taken evenly spaced over the epoch (the sampler orders each group of 50 batches longest first). One optimizer
step per batch (fused AdamW, the Trainer's default in train.py), dropout on.

FLOPs per target token (forward; training = 3x forward), counting a multiply-add as 2 FLOPs, with
E embedding_dim, H hidden_size, He encoder_hidden_size, d directions, K = d*He, A attention width, V vocabulary,
r = source tokens per target token, Le/Ld encoder/decoder layers:
    encoder   r * 2 * d * 3 * He * (In + He) per layer           (GRU: 3 gates; In = E for layer 1, K above)
    decoder   2 * 3 * H * (I0 + H) + (Ld-1) * 2 * 3 * H * (2H)  (I0 = E [+ K for none/bahdanau] [+ E feeding])
    attention 2 * S * K (context) + scores: dot 2*S*H; general 2*S*H + keys r*2*K*H;
              additive 2*H*A + S*(2*A) + keys r*2*K*A
    output    2 * (K + H) * E + 2 * E * V
The attention terms use the batch's mean source length S; the script reports the total from the model's shapes.
Achieved FLOP/s are divided by the best of the 4096² float32 matmul timings taken before and after each config.

    python benchmarks/train_speed.py --data_dir ../shared/data/multi30k --batches 20 --out benchmarks/results/train_speed.md
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import add_corpus_argument, emit, machine

from hf_rnn_seq2seq.configuration_rnn_seq2seq import VOCAB_SIZE

CONFIGS = {
    "luong_general": dict(attention_type="luong_general"),
    "luong_dot": dict(attention_type="luong_dot", encoder_hidden_size=256),
    "luong_concat": dict(attention_type="luong_concat"),
    "none": dict(attention_type="none"),
    "bahdanau": dict(attention_type="bahdanau"),
    "bahdanau+feeding": dict(attention_type="bahdanau", input_feeding=True),
    "luong_general+feeding": dict(attention_type="luong_general", input_feeding=True),
}
# The anchor's size (JoeyNMT's: encoder 512 per direction, decoder 512, embeddings 256; the config's defaults) and
# train.py's default recipe (encoder 256 per direction). luong_dot needs K = 2 x 256 = H at both.
SIZES = {"anchor": {}, "default": dict(encoder_hidden_size=256)}


def matmul_peak_gflops(size=4096, trials=7) -> float:
    """The best of several timed 4096x4096 float32 matmuls: the machine's attainable peak, not a noisy mean."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def flops_per_target_token(config, source_per_target: float, mean_source_length: float) -> float:
    """Forward FLOPs per target token, from the formula in the module docstring."""
    E, H, He, V = config.embedding_dim, config.hidden_size, config.encoder_hidden_size, config.vocab_size
    d = 2 if config.bidirectional_encoder else 1
    K, A, S = config.encoder_output_size, config.attention_hidden_size, mean_source_length
    encoder = sum(2 * d * 3 * He * ((E if i == 0 else K) + He) for i in range(config.num_encoder_layers))
    first_input = E + (K if config.attention_type in ("none", "bahdanau") else 0) + (E if config.input_feeding else 0)
    decoder = 2 * 3 * H * (first_input + H) + (config.num_decoder_layers - 1) * 2 * 3 * H * (2 * H)
    attention = {
        "none": 0,
        "luong_dot": 2 * S * K + 2 * S * H,
        "luong_general": 2 * S * K + 2 * S * H + source_per_target * 2 * K * H,
        "luong_concat": 2 * S * K + 2 * H * A + S * 2 * A + source_per_target * 2 * K * A,
        "bahdanau": 2 * S * K + 2 * H * A + S * 2 * A + source_per_target * 2 * K * A,
    }[config.attention_type]
    output = 2 * (K + H) * E + 2 * E * V
    return source_per_target * encoder + decoder + attention + output


def prepare_batches(data_dir: str, vocab_size: int, batch_size: int, count: int, cache: Path):
    """Tokenised, length-grouped batches of the training split (saved so every worker uses the same ones)."""
    from hf_rnn_seq2seq.data import load_parallel_dir
    from hf_rnn_seq2seq.tokenization import train_bpe_tokenizer
    from hf_rnn_seq2seq.trainer import EpochSeededLengthGroupedSampler, padded_lengths

    train = load_parallel_dir(data_dir, "de", "en", splits=["train"])["train"]
    pairs = [(row["de"], row["en"]) for row in train["translation"]]
    tokenizer = train_bpe_tokenizer([s for pair in pairs for s in pair], vocab_size=vocab_size)
    sources = tokenizer([de for de, _ in pairs])["input_ids"]
    targets = tokenizer(text_target=[en for _, en in pairs])["input_ids"]
    epoch_target_tokens = sum(map(len, targets))
    # The trainer's group_by_length order (its first epoch, seed 0).
    lengths = padded_lengths([len(ids) for ids in sources], [len(ids) for ids in targets])
    order = list(EpochSeededLengthGroupedSampler(batch_size, lengths, seed=0, epoch=lambda: 0))
    batches = [order[k : k + batch_size] for k in range(0, len(order), batch_size)]
    batches = batches[:: max(1, len(batches) // (count + 2))][: count + 2]
    payload = {
        "vocab_size": len(tokenizer),
        "epoch_target_tokens": epoch_target_tokens,
        "batches": [[[sources[i] for i in batch], [targets[i] for i in batch]] for batch in batches],
    }
    cache.write_text(json.dumps(payload))
    return payload


def pad(rows, value):
    width = max(map(len, rows))
    return torch.tensor([row + [value] * (width - len(row)) for row in rows])


def run_worker(name: str, size: str, cache: Path, threads: int) -> dict:
    from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration
    from hf_rnn_seq2seq.allocator import keep_freed_memory_for_reuse

    keep_freed_memory_for_reuse()  # as train.py does
    torch.set_num_threads(threads)
    payload = json.loads(cache.read_text())
    torch.manual_seed(0)
    config = RNNSeq2SeqConfig(vocab_size=payload["vocab_size"], dropout=0.1, **{**SIZES[size], **CONFIGS[name]})
    model = RNNSeq2SeqForConditionalGeneration(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)  # the Trainer's adamw_torch_fused
    tokens = seconds = flops = 0.0
    for index, (sources, targets) in enumerate(payload["batches"]):
        input_ids, labels = pad(sources, 0), pad(targets, -100)
        attention_mask = (input_ids != 0).long()
        start = time.perf_counter()
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        elapsed = time.perf_counter() - start
        if index < 2:
            continue  # warm-up
        target_tokens = int((labels != -100).sum())
        source_tokens = int(attention_mask.sum())
        tokens += target_tokens
        seconds += elapsed
        per_token = flops_per_target_token(config, source_tokens / target_tokens, source_tokens / len(sources))
        flops += 3 * per_token * target_tokens
    return {
        "config": name,
        "size": size,
        "parameters": model.num_parameters(),
        "tokens_per_second": tokens / seconds,
        "seconds_per_batch": seconds / (len(payload["batches"]) - 2),
        "seconds_per_epoch": payload["epoch_target_tokens"] / (tokens / seconds),
        "gflops_per_second": flops / seconds / 1e9,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_corpus_argument(parser)
    parser.add_argument("--vocab_size", type=int, default=VOCAB_SIZE)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per configuration (after 2 warm-up)")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS))
    parser.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", help="write the results table (Markdown) here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args.worker, args.size, Path(args.cache), args.threads)))
        return
    unknown = set(args.configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configs {sorted(unknown)}; choose from {list(CONFIGS)}")

    cache = Path(os.environ.get("TMPDIR", "/tmp")) / f"train_speed_batches_{os.getpid()}.json"
    prepare_batches(args.data_dir, args.vocab_size, args.batch_size, args.batches, cache)
    torch.set_num_threads(args.threads)
    # The VM's matmul speed drifts by up to 2x within minutes (other tenants): measuring it between all the configs
    # and dividing by the best keeps a slow moment from inflating the ratio.
    peaks = [matmul_peak_gflops()]
    rows = []
    for size in args.sizes:
        for name in args.configs:
            result = subprocess.run(
                [sys.executable, __file__, "--worker", name, "--size", size, "--cache", str(cache),
                 "--threads", str(args.threads)],
                capture_output=True, text=True, check=True,
            )
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(rows[-1], file=sys.stderr)
            peaks.append(matmul_peak_gflops())
    cache.unlink()
    peak = max(peaks)

    lines = [
        f"Command: `python benchmarks/train_speed.py {' '.join(argv if argv is not None else sys.argv[1:])}`  ",
        f"Machine: {machine()}, {args.threads} torch threads, torch {torch.__version__}; "
        f"date {time.strftime('%Y-%m-%d')}; float32 matmul peak {peak:.0f} GFLOP/s (4096², the best "
        f"of {len(peaks)} measurements before and between the configs: {min(peaks):.0f}–{peak:.0f})  ",
        f"Data: Multi30k de→en train, joint BPE {args.vocab_size}, batches of {args.batch_size} sentences grouped "
        f"by length, {args.batches} timed batches after 2 warm-up",
        "",
        "| config | size | parameters | target tok/s | s/batch | s/epoch | GFLOP/s | % of peak | peak RSS MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['config']} | {row['size']} | {row['parameters'] / 1e6:.1f}M | {row['tokens_per_second']:.0f} | "
            f"{row['seconds_per_batch']:.2f} | {row['seconds_per_epoch']:.0f} | {row['gflops_per_second']:.0f} | "
            f"{100 * row['gflops_per_second'] / peak:.0f}% | {row['peak_rss_mib']:.0f} |"
        )
    emit(lines, args.out)


if __name__ == "__main__":
    main()
