"""sacreBLEU BLEU and chrF as a local `evaluate` metric (loaded by path, so no Hub access).

`evaluate.load("sacrebleu")` downloads its script from the Hub and fails offline; this module
ships inside the package instead: ``evaluate.load(path_to_this_file)`` (see
`hf_rnn_seq2seq.metrics.load_metric`). Scores are sacreBLEU's defaults: BLEU cased with the
13a tokenizer and exponential smoothing, chrF with character order 6 and beta 2, computed on
detokenised text. The signatures say exactly that, so reported numbers can be compared.
"""

import datasets
import evaluate
from sacrebleu.metrics import BLEU, CHRF

_DESCRIPTION = "Corpus-level sacreBLEU BLEU (cased, 13a) and chrF, with their signatures and the length ratio."

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): detokenised system outputs.
    references (list of str, or list of list of str): one reference, or the same number of
        references, per prediction.
Returns:
    bleu (float): corpus BLEU, 0-100.
    chrf (float): corpus chrF, 0-100.
    bleu_signature, chrf_signature (str): sacreBLEU signatures of the two scores.
    precisions (list of float): modified n-gram precisions, n = 1..4.
    brevity_penalty (float), length_ratio (float): hypothesis length / reference length.
    sys_len, ref_len (int): token counts after 13a tokenisation.
Example:
    >>> metric = evaluate.load("hf_rnn_seq2seq/metrics/sacrebleu_chrf.py")
    >>> metric.compute(predictions=["A dog runs."], references=["A dog runs."])["bleu"]
    100.00000000000004
"""

_CITATION = """@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    year = "2018",
    pages = "186--191",
}"""


class SacreBleuChrf(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
                ),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
            codebase_urls=["https://github.com/mjpost/sacrebleu"],
            reference_urls=["https://aclanthology.org/W18-6319"],
        )

    def _compute(self, predictions, references):
        if references and isinstance(references[0], str):
            references = [[r] for r in references]
        counts = {len(refs) for refs in references}
        if len(counts) > 1:
            raise ValueError(f"every prediction needs the same number of references, got {sorted(counts)}")
        # sacrebleu wants one stream per reference position, not one list per sentence.
        streams = [list(stream) for stream in zip(*references)]
        bleu_metric, chrf_metric = BLEU(), CHRF()
        bleu = bleu_metric.corpus_score(predictions, streams)
        chrf = chrf_metric.corpus_score(predictions, streams)
        return {
            "bleu": bleu.score,
            "chrf": chrf.score,
            "bleu_signature": str(bleu_metric.get_signature()),
            "chrf_signature": str(chrf_metric.get_signature()),
            "precisions": list(bleu.precisions),
            "brevity_penalty": bleu.bp,
            "length_ratio": bleu.ratio,
            "sys_len": bleu.sys_len,
            "ref_len": bleu.ref_len,
        }
