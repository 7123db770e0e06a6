"""Time our translation of a test set with another toolkit's decoding work: beam 5, batch 64, exactly N decoding
steps (JoeyNMT's, which holds EOS back), or with MAX_NEW_TOKENS 0 the model's own generation config's limits and
EOS (Marian's, whose search stops each sentence at its end).

Run by joeynmt_side_by_side.py and marian_side_by_side.py in a fresh process (so that its peak memory is the
translation's alone):

    python benchmarks/fixed_length_translation.py MODEL_FOLDER MAX_NEW_TOKENS SENTENCES.json [DTYPE]

DTYPE: float32 (default) or bfloat16, the type the model computes in. Prints one JSON line: seconds, mean output
tokens before EOS (JoeyNMT's count), peak RSS in MiB, and the translations. The allocator is set up as the translate
command sets it (`hf_rnn_seq2seq.allocator`).
"""

import json
import resource
import sys
import time
from pathlib import Path

from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, LogitsProcessor, LogitsProcessorList

import hf_rnn_seq2seq  # noqa: F401  registers the classes
from hf_rnn_seq2seq.allocator import keep_freed_memory_for_reuse
from hf_rnn_seq2seq.precision import DTYPES
from hf_rnn_seq2seq.translation import BATCH_SIZE, NUM_BEAMS, translate


class HoldBackEOS(LogitsProcessor):
    """As JoeyNMT's min_output_length does: the EOS score set to -inf, in place."""

    def __init__(self, eos_token_id: int):
        self.eos_token_id = eos_token_id

    def __call__(self, input_ids, scores):
        scores[:, self.eos_token_id] = -float("inf")
        return scores


def main(argv: list[str]) -> None:
    folder, max_new_tokens, sentences = argv[0], int(argv[1]), json.loads(Path(argv[2]).read_text(encoding="utf-8"))
    dtype = DTYPES[argv[3] if len(argv) > 3 else "float32"]
    keep_freed_memory_for_reuse()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, dtype=dtype)
    eos = model.config.eos_token_id
    hold_back_eos = LogitsProcessorList([HoldBackEOS(eos)])
    # HoldBackEOS replaces a min_new_tokens from the model's generation config (JoeyNMT's min_output_length, imported).
    fixed_length = dict(num_beams=NUM_BEAMS)
    if max_new_tokens:
        fixed_length.update(max_new_tokens=max_new_tokens, min_new_tokens=0, logits_processor=hold_back_eos)
    translate(model, tokenizer, sentences[:BATCH_SIZE], batch_size=BATCH_SIZE, **fixed_length)  # warm-up: one batch

    generate, output_tokens = model.generate, []

    def counting_generate(**kwargs):  # tokens before EOS, read off the generated ids
        ids = generate(**kwargs)
        ended = (ids[:, 1:] == eos).cumsum(-1) > 0
        output_tokens.extend((~ended).sum(-1).tolist())
        return ids

    model.generate = counting_generate
    start = time.perf_counter()
    translations = translate(model, tokenizer, sentences, batch_size=BATCH_SIZE, **fixed_length)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "output_tokens": sum(output_tokens) / len(output_tokens),
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "translations": translations}))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
