"""Run in JoeyNMT's own environment (.cache/joeynmt-venv) by tests/test_joeynmt_import.py: for each configuration,
train the model as `joeynmt train` does, decode its test set as `joeynmt test -o PREFIX --save-scores` does, greedy and
with beam 5, and compute JoeyNMT's logits for given sentence pairs on one padded batch.

    python tests/joeynmt_worker.py JOB.json

JOB.json: {"configs": [path, ...], "pairs": [[source, target], ...], "subword_nmt": {"input", "codes", "merges", "vocabulary"},
"sentencepiece": {"input", "prefix", "vocab_size"}}: first learns the BPE codes (subword-nmt) and the unigram model
(SentencePiece) that configurations may name, and a vocabulary file of every piece the codes can produce. Writes beside each configuration's model_dir:
greedy.test.tokens, beam.test.tokens (JoeyNMT's hypotheses as tokens, one sentence a line) and logits.pt (source
tokens and ids, target ids, logits, and the pairs in the batch's order), read back with torch.load(weights_only=True).
"""

import json
import sys
from pathlib import Path

import torch
from joeynmt.config import load_config, parse_global_args
from joeynmt.helpers import make_model_dir
from joeynmt.model import build_model
from joeynmt.prediction import test
from joeynmt.tokenizers import build_tokenizer
from joeynmt.training import train
from joeynmt.vocabulary import build_vocab


def logits_of(cfg: dict, model_dir: Path, pairs: list) -> dict:
    """JoeyNMT's own segmentation and vocabulary lookup, and its model's logits under teacher forcing."""
    data = parse_global_args(cfg, rank=0, mode="test").data  # with its defaults filled in, as `joeynmt test` reads it
    src_vocab, trg_vocab = build_vocab(data, model_dir=model_dir)
    tokenizers = build_tokenizer(data)
    src_lang, trg_lang = data["src"]["lang"], data["trg"]["lang"]
    tokenizers[src_lang].set_vocab(src_vocab)
    tokenizers[trg_lang].set_vocab(trg_vocab)
    model = build_model(cfg["model"], src_vocab=src_vocab, trg_vocab=trg_vocab)
    checkpoint = torch.load(model_dir / "best.ckpt", map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["model_state"])
    model.eval()

    def encode(text, tokenizer, vocab):
        tokens = tokenizer(tokenizer.pre_process(text))
        return tokens, [vocab.lookup(t) for t in tokens] + [vocab.eos_index]

    # JoeyNMT's encoder packs the batch, which must be sorted longest source first.
    sources = [encode(source, tokenizers[src_lang], src_vocab) for source, _ in pairs]
    order = sorted(range(len(pairs)), key=lambda i: -len(sources[i][1]))
    pairs, sources = [pairs[i] for i in order], [sources[i] for i in order]
    targets = [encode(target, tokenizers[trg_lang], trg_vocab)[1] for _, target in pairs]
    pad = src_vocab.pad_index
    src = torch.full((len(pairs), max(len(ids) for _, ids in sources)), pad)
    trg_input = torch.full((len(pairs), max(map(len, targets)) + 1), pad)
    for row, ((_, ids), target) in enumerate(zip(sources, targets)):
        src[row, : len(ids)] = torch.tensor(ids)
        trg_input[row, : len(target)] = torch.tensor([trg_vocab.bos_index, *target[:-1]])
    lengths = (src != pad).sum(-1)
    with torch.no_grad():
        out, _, _, _ = model._encode_decode(
            src=src, trg_input=trg_input, src_mask=(src != pad).unsqueeze(1), src_length=lengths,
            trg_mask=(trg_input != pad).unsqueeze(1),
        )  # fmt: skip
    return {
        "pairs": pairs,
        "source_tokens": [tokens for tokens, _ in sources],
        "source_ids": [ids for _, ids in sources],
        "target_ids": targets,
        "decoder_input_ids": trg_input,
        "logits": out,
    }


def learn_segmentations(job: dict) -> None:
    import sentencepiece
    from subword_nmt.learn_bpe import learn_bpe

    bpe = job["subword_nmt"]
    with open(bpe["input"], encoding="utf-8") as infile, open(bpe["codes"], "w", encoding="utf-8") as outfile:
        learn_bpe(infile, outfile, bpe["merges"])
    # Every symbol of the merges as subword-nmt writes it: "ab</w>" ends a word ("ab"), any other "ab" is "ab@@".
    merges = [line.split() for line in Path(bpe["codes"]).read_text(encoding="utf-8").splitlines()[1:]]
    symbols = dict.fromkeys(s for left, right in merges for s in (left, right, left + right))
    pieces = [s[: -len("</w>")] if s.endswith("</w>") else s + "@@" for s in symbols]
    Path(bpe["vocabulary"]).write_text("\n".join(pieces) + "\n", encoding="utf-8")
    spm = job["sentencepiece"]
    sentencepiece.SentencePieceTrainer.train(
        input=spm["input"], model_prefix=spm["prefix"], vocab_size=spm["vocab_size"], model_type="unigram",
        hard_vocab_limit=False, minloglevel=2,
    )  # fmt: skip


def main():
    job = json.loads(Path(sys.argv[1]).read_text())
    learn_segmentations(job)
    for path in job["configs"]:
        cfg = load_config(Path(path))
        model_dir = Path(cfg["model_dir"])
        make_model_dir(model_dir, overwrite=True)
        train(rank=0, world_size=1, cfg=cfg, skip_test=True)
        for name, beam_size in (("greedy", 1), ("beam", 5)):
            cfg = load_config(Path(path))
            cfg["testing"].update(beam_size=beam_size, beam_alpha=0, return_prob="hyp")
            test(cfg, output_path=str(model_dir / name), save_scores=True)
        torch.save(logits_of(load_config(Path(path)), model_dir, job["pairs"]), model_dir / "logits.pt")


if __name__ == "__main__":
    main()
