"""The shipped sacreBLEU/chrF `evaluate` module: loaded by path offline, same numbers as sacrebleu itself."""

import gzip

import evaluate
import pytest
import sacrebleu

from hf_rnn_seq2seq.metrics import SACREBLEU_CHRF_PATH, load_metric


@pytest.fixture(scope="module")
def metric():
    return load_metric()


@pytest.fixture(scope="module")
def references(multi30k_dir):
    with gzip.open(multi30k_dir / "val.en.gz", "rt", encoding="utf-8") as f:
        return [line.strip() for line in f][:200]


def degrade(sentences):
    """Plausible system output: some words dropped, some sentences lower-cased or shortened."""
    out = []
    for i, s in enumerate(sentences):
        words = s.split()
        if i % 3 == 0:
            words = words[:-2] or words
        if i % 5 == 0:
            words = [w.lower() for w in words]
        if i % 7 == 0:
            words = words[1:] + words[:1]
        out.append(" ".join(words))
    return out


def test_metric_is_a_local_evaluate_module():
    assert SACREBLEU_CHRF_PATH.is_file()
    assert isinstance(evaluate.load(str(SACREBLEU_CHRF_PATH)), evaluate.Metric)


def test_same_scores_as_sacrebleu(metric, references):
    hypotheses = degrade(references)
    result = metric.compute(predictions=hypotheses, references=references)
    bleu = sacrebleu.corpus_bleu(hypotheses, [references])
    chrf = sacrebleu.corpus_chrf(hypotheses, [references])
    assert 10 < bleu.score < 95
    assert result["bleu"] == bleu.score
    assert result["chrf"] == chrf.score
    assert result["length_ratio"] == bleu.ratio
    assert result["precisions"] == list(bleu.precisions)
    assert (result["sys_len"], result["ref_len"]) == (bleu.sys_len, bleu.ref_len)
    assert result["bleu_signature"] == f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{sacrebleu.__version__}"
    assert result["chrf_signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no")


def test_nested_and_multiple_references(metric, references):
    hypotheses = degrade(references)
    nested = metric.compute(predictions=hypotheses, references=[[r] for r in references])
    assert nested["bleu"] == sacrebleu.corpus_bleu(hypotheses, [references]).score
    second = [r.replace("A ", "One ", 1) for r in references]
    multi = metric.compute(predictions=hypotheses, references=[[a, b] for a, b in zip(references, second)])
    assert multi["bleu"] == sacrebleu.corpus_bleu(hypotheses, [references, second]).score
    assert multi["bleu_signature"].startswith("nrefs:2|")


def test_perfect_and_empty_output(metric):
    assert metric.compute(predictions=["A dog runs ."], references=["A dog runs ."])["bleu"] == pytest.approx(100)
    assert metric.compute(predictions=[""], references=["A dog runs ."])["bleu"] == 0


def test_uneven_reference_counts_are_refused(metric):
    with pytest.raises(ValueError, match="same number of references"):
        metric.compute(predictions=["a", "b"], references=[["a"], ["b", "c"]])
