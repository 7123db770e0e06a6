"""Translation speed of a trained model: sentences per second on the Multi30k test split with greedy decoding and
beam search, the overhead of `generate()` over a minimal hand-written greedy loop on the same model (which must
produce the same tokens), and peak memory. `--keep_freed_memory` sets the allocator up as the translate and evaluate
commands do (`hf_rnn_seq2seq.allocator`); without it, glibc's defaults.

    python benchmarks/translate_speed.py runs/multi30k-de-en --out benchmarks/results/translate_speed.md
"""

import argparse
import resource
import time

import torch
from common import add_corpus_argument, emit, machine, test_pairs
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

import hf_rnn_seq2seq  # noqa: F401  registers the classes
from hf_rnn_seq2seq.allocator import keep_freed_memory_for_reuse
from hf_rnn_seq2seq.precision import DTYPES
from hf_rnn_seq2seq.translation import BATCH_SIZE, NUM_BEAMS, cut_at_eos, translate



@torch.no_grad()
def hand_written_greedy(model, input_ids, attention_mask, max_new_tokens):
    """The smallest correct greedy loop: encode once, one decoder step per token through the recurrent state."""
    config = model.config
    encoder_outputs = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
    tokens = torch.full((input_ids.shape[0], 1), config.decoder_start_token_id)
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool)
    state, generated = None, [tokens]
    for _ in range(max_new_tokens):
        out = model(encoder_outputs=encoder_outputs, attention_mask=attention_mask, decoder_input_ids=tokens,
                    past_key_values=state, use_cache=True)
        state = out.past_key_values
        tokens = out.logits[:, -1].argmax(-1, keepdim=True)
        tokens = tokens.masked_fill(finished[:, None], config.pad_token_id)
        generated.append(tokens)
        finished |= tokens[:, 0] == config.eos_token_id
        if finished.all():
            break
    return torch.cat(generated, dim=1)


def batches(tokenizer, sentences, batch_size):
    order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
    for start in range(0, len(order), batch_size):
        yield tokenizer([sentences[i] for i in order[start : start + batch_size]], return_tensors="pt", padding=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a folder written by train.py")
    add_corpus_argument(parser, languages=True)
    parser.add_argument("--batch_size", type=int, default=BATCH_SIZE)
    parser.add_argument("--max_sentences", type=int, default=None)
    parser.add_argument("--max_new_tokens", type=int, default=128)
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32", help="the type to compute in")
    parser.add_argument("--keep_freed_memory", action="store_true", help="the commands' allocator settings")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.keep_freed_memory:
        keep_freed_memory_for_reuse()

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSeq2SeqLM.from_pretrained(args.model, dtype=DTYPES[args.dtype]).eval()
    sentences = test_pairs(args.data_dir, args.source_lang, args.target_lang)[0][: args.max_sentences]
    translate(model, tokenizer, sentences[: args.batch_size])  # warm-up: oneDNN sets up its kernels
    results = {}
    for name, kwargs in (("greedy", {"num_beams": 1}), (f"beam {NUM_BEAMS}", {"num_beams": NUM_BEAMS})):
        start = time.perf_counter()
        translate(model, tokenizer, sentences, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, **kwargs)
        results[name] = len(sentences) / (time.perf_counter() - start)

    generate_seconds = loop_seconds = 0.0
    for batch in batches(tokenizer, sentences, args.batch_size):
        start = time.perf_counter()
        with torch.no_grad():
            by_generate = model.generate(**batch, num_beams=1, do_sample=False, max_new_tokens=args.max_new_tokens)
        generate_seconds += time.perf_counter() - start
        start = time.perf_counter()
        by_loop = hand_written_greedy(model, batch["input_ids"], batch["attention_mask"], args.max_new_tokens)
        loop_seconds += time.perf_counter() - start
        eos = model.config.eos_token_id
        if [cut_at_eos(r.tolist(), eos) for r in by_generate] != [cut_at_eos(r.tolist(), eos) for r in by_loop]:
            raise AssertionError("generate() and the hand-written loop disagree")

    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    emit([
        f"Command: `python benchmarks/translate_speed.py {args.model} --batch_size {args.batch_size} "
        f"--dtype {args.dtype}{' --keep_freed_memory' * args.keep_freed_memory}`  ",
        f"Machine: {machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
        f"date {time.strftime('%Y-%m-%d')}; model {model.num_parameters() / 1e6:.1f}M parameters "
        f"({model.config.attention_type}); {len(sentences)} test sentences {args.source_lang}→{args.target_lang}, "
        f"batch {args.batch_size}, length-sorted",
        "",
        "| decoding | sentences/s |",
        "| --- | ---: |",
        *(f"| {name} | {value:.1f} |" for name, value in results.items()),
        "",
        f"`generate()` greedy against a hand-written greedy loop (same tokens): {generate_seconds:.2f} s vs "
        f"{loop_seconds:.2f} s, overhead x{generate_seconds / loop_seconds:.2f}. Peak RSS {peak_mib:.0f} MiB.",
    ], args.out)


if __name__ == "__main__":
    main()
