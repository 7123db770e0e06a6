"""Where a beam-search step's time goes, in float32 and in bfloat16: the model's matrix products, the rest of the
model's step (gates, attention softmax, concatenations, copies), and `generate()`'s own work between two calls of
the model (log-softmax of the scores, beam-score addition, top-k, reordering the state).

bfloat16 speeds up the products by the CPU's bfloat16 units and leaves `generate()`'s float32 score work as it is,
so the whole step gains less than the products: even with the model's other work cut to nothing, the step's
float32 / bfloat16 ratio could not exceed (products + generate()'s own, float32) / (the same, bfloat16), the table's
last line.

    python benchmarks/beam_step.py runs/multi30k-de-en --out benchmarks/results/beam_step.md
"""

import argparse
import statistics
import time

import torch
from common import add_corpus_argument, emit, machine, test_pairs
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
from translate_speed import batches

import hf_rnn_seq2seq  # noqa: F401  registers the classes
from hf_rnn_seq2seq.allocator import keep_freed_memory_for_reuse
from hf_rnn_seq2seq.precision import DTYPES
from hf_rnn_seq2seq.translation import BATCH_SIZE, NUM_BEAMS

PRODUCTS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}  # the profiler's names of matrix products
STEP = "model step"  # the profiler range around each call of the model's forward
PARTS = ("step", "products", "model, other", "generate(), own", "encoder, a batch")


class Clock:
    """The wall time spent in a module's forward calls, and how many calls (forward hooks)."""

    def __init__(self, module):
        self.seconds, self.calls, self._start = 0.0, 0, 0.0
        self._hooks = [module.register_forward_pre_hook(self._enter), module.register_forward_hook(self._leave)]

    def _enter(self, module, args):
        self._start = time.perf_counter()

    def _leave(self, module, args, output):
        self.seconds += time.perf_counter() - self._start
        self.calls += 1

    def remove(self):
        for hook in self._hooks:
            hook.remove()


def timed(model, inputs, generate_kwargs) -> dict:
    """Milliseconds: a decoding step (generate()'s time less the encoder's, per call of the model), the model's
    share of it, and the encoder's time per batch."""
    steps, encoder = Clock(model), Clock(model.get_encoder())
    start = time.perf_counter()
    for batch in inputs:
        model.generate(**batch, **generate_kwargs)
    seconds = time.perf_counter() - start
    steps.remove()
    encoder.remove()
    step = (seconds - encoder.seconds) / steps.calls
    model_seconds, encoder_seconds = steps.seconds / steps.calls, encoder.seconds / len(inputs)
    return {"step": 1e3 * step, "model": 1e3 * model_seconds, "encoder": 1e3 * encoder_seconds}


def product_share(model, inputs, generate_kwargs) -> float:
    """The products' share of the model's step time, from the torch profiler (self time of the product operators
    called inside a model step)."""
    open_ranges = []

    def enter(module, args):
        open_ranges.append(torch.profiler.record_function(STEP))
        open_ranges[-1].__enter__()

    hooks = [model.register_forward_pre_hook(enter),
             model.register_forward_hook(lambda module, args, output: open_ranges.pop().__exit__(None, None, None))]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for batch in inputs:
            model.generate(**batch, **generate_kwargs)
    for hook in hooks:
        hook.remove()
    events = profile.events()

    def in_step(event) -> bool:
        parent = event.cpu_parent
        while parent is not None and parent.name != STEP:
            parent = parent.cpu_parent
        return parent is not None

    products = sum(event.self_cpu_time_total for event in events if event.name in PRODUCTS and in_step(event))
    return products / sum(event.cpu_time_total for event in events if event.name == STEP)


def measure(model, inputs, generate_kwargs, rounds: int) -> dict:
    """PARTS in milliseconds, the median of `rounds` timed passes over `inputs`."""
    runs = [timed(model, inputs, generate_kwargs) for _ in range(rounds)]
    middle = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    products = middle["model"] * product_share(model, inputs, generate_kwargs)
    values = (middle["step"], products, middle["model"] - products, middle["step"] - middle["model"], middle["encoder"])
    return dict(zip(PARTS, values))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a folder written by train.py")
    add_corpus_argument(parser, languages=True)
    parser.add_argument("--sentences", type=int, default=256, help="the first test sentences, in batches")
    parser.add_argument("--batch_size", type=int, default=BATCH_SIZE)
    parser.add_argument("--num_beams", type=int, default=NUM_BEAMS)
    parser.add_argument("--max_new_tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="timed passes a type (their median)")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    keep_freed_memory_for_reuse()  # as the translate and evaluate commands

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    sentences = test_pairs(args.data_dir, args.source_lang, args.target_lang)[0][: args.sentences]
    inputs = list(batches(tokenizer, sentences, args.batch_size))
    generate_kwargs = {"num_beams": args.num_beams, "do_sample": False, "max_new_tokens": args.max_new_tokens}
    results = {}
    with torch.no_grad():
        for name, dtype in DTYPES.items():
            model = AutoModelForSeq2SeqLM.from_pretrained(args.model, dtype=dtype).eval()
            model.generate(**inputs[0], **generate_kwargs)  # warm-up: oneDNN sets up its kernels
            results[name] = measure(model, inputs, generate_kwargs, args.rounds)

    low, high = results["float32"], results["bfloat16"]
    ratios = {part: low[part] / high[part] for part in PARTS}
    ceiling = (low["products"] + low["generate(), own"]) / (high["products"] + high["generate(), own"])
    emit([
        f"Command: `python benchmarks/beam_step.py {args.model} --sentences {args.sentences} "
        f"--batch_size {args.batch_size} --num_beams {args.num_beams}`  ",
        f"Machine: {machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
        f"date {time.strftime('%Y-%m-%d')}; {len(sentences)} test sentences {args.source_lang}→{args.target_lang}, "
        f"length-sorted batches of {args.batch_size}, beam {args.num_beams}; milliseconds a decoding step (the median "
        f"of {args.rounds} passes; the products' share from a profiled pass)",
        "",
        "| computed in | " + " | ".join(PARTS) + " |",
        "| --- |" + " ---: |" * len(PARTS),
        *(f"| {name} | " + " | ".join(f"{ms[part]:.2f}" for part in PARTS) + " |" for name, ms in results.items()),
        "| float32 / bfloat16 | " + " | ".join(f"{ratios[part]:.2f}×" for part in PARTS) + " |",
        "",
        f"The step's ratio, were the model's other work free in both types: {ceiling:.2f}×.",
    ], args.out)


if __name__ == "__main__":
    main()
