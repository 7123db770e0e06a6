"""Decoding settings of a trained model, chosen on validation: BLEU for each beam size and length penalty, and for
the average of the run's last K checkpoints (weights averaged tensor by tensor, Vaswani et al. 2017; `--average`
takes several K, and train.py's `--save_total_limit` sets how many checkpoints a run keeps).

Selection is on the validation split; the test split is scored only for the settings and weights the table names
best, so the test score stays an honest estimate.

    python benchmarks/decoding_sweep.py runs/recipe-multi30k-de-en --out benchmarks/results/decoding_sweep.md
"""

import argparse
import sys
import time
from pathlib import Path

import torch
from common import add_corpus_argument, emit
from safetensors.torch import load_file
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from hf_rnn_seq2seq.data import load_parallel_dir
from hf_rnn_seq2seq.metrics import load_metric
from hf_rnn_seq2seq.translation import BATCH_SIZE, translate



def averaged_model(run_dir: Path, checkpoints: list[Path]):
    """The run's model with every tensor replaced by its mean over `checkpoints`."""
    model = AutoModelForSeq2SeqLM.from_pretrained(run_dir).eval()
    states = [load_file(checkpoint / "model.safetensors") for checkpoint in checkpoints]
    averaged = {name: sum(state[name] for state in states) / len(states) for name in states[0]}
    missing, unexpected = model.load_state_dict(averaged, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:  # the tied head is not stored separately
        raise ValueError(f"checkpoints do not match the model: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a train.py output folder (with its checkpoint-N folders for averaging)")
    add_corpus_argument(parser, languages=True)
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 3, 5, 10])
    parser.add_argument("--length_penalties", type=float, nargs="+", default=[0.6, 1.0, 1.4])
    parser.add_argument("--average", type=int, nargs="*", default=[2],
                        help="also score the average of the last K checkpoints, for each K given (none: no averaging)")
    parser.add_argument("--max_sentences", type=int, help="only the first N sentences of each split")
    parser.add_argument("--batch_size", type=int, default=BATCH_SIZE)
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    run_dir = Path(args.run_dir)
    splits = load_parallel_dir(args.data_dir, args.source_lang, args.target_lang, splits=["validation", "test"])
    data = {
        name: ([p[args.source_lang] for p in split["translation"]][: args.max_sentences],
               [p[args.target_lang] for p in split["translation"]][: args.max_sentences])
        for name, split in splits.items()
    }  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    metric = load_metric()
    models = {"final weights": AutoModelForSeq2SeqLM.from_pretrained(run_dir).eval()}
    checkpoints = sorted(run_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    for count in args.average:
        if not 2 <= count <= len(checkpoints):
            parser.error(f"--average {count}: {run_dir} has {len(checkpoints)} checkpoint folders to average")
        window = checkpoints[-count:]
        models[f"average of {', '.join(c.name for c in window)}"] = averaged_model(run_dir, window)

    def score(model, split, beams, length_penalty):
        sources, references = data[split]
        hypotheses = translate(model, tokenizer, sources, batch_size=args.batch_size, num_beams=beams,
                               length_penalty=length_penalty)  # fmt: skip
        return metric.compute(predictions=hypotheses, references=references)

    rows = []
    for weights, model in models.items():
        for beams in args.beams:
            for length_penalty in args.length_penalties if beams > 1 else [1.0]:  # greedy ignores the penalty
                result = score(model, "validation", beams, length_penalty)
                rows.append((weights, beams, length_penalty, result["bleu"], result["length_ratio"]))
                print(rows[-1], file=sys.stderr)
    best = max(rows, key=lambda row: row[3])
    test = score(models[best[0]], "test", best[1], best[2])
    signature = test["bleu_signature"]

    lines = [
        f"Command: `python benchmarks/decoding_sweep.py {' '.join(argv if argv is not None else sys.argv[1:])}`  ",
        f"Date {time.strftime('%Y-%m-%d')}; Multi30k {args.source_lang}→{args.target_lang}, "
        f"{len(data['validation'][0])} validation / {len(data['test'][0])} test sentences; sacreBLEU `{signature}`",
        "",
        "| weights | beams | length penalty | val BLEU | val length ratio |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(f"| {w} | {b} | {lp} | {bleu:.2f} | {ratio:.3f} |" for w, b, lp, bleu, ratio in rows),
        "",
        f"Best on validation: {best[0]}, beam {best[1]}, length penalty {best[2]} (val {best[3]:.2f}); "
        f"test BLEU with it: **{test['bleu']:.2f}** (chrF {test['chrf']:.2f}).",
    ]
    emit(lines, args.out)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
