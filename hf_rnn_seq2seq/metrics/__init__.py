"""Evaluation metrics shipped with the package, loadable offline."""

from pathlib import Path

import evaluate

SACREBLEU_CHRF_PATH = Path(__file__).with_name("sacrebleu_chrf.py")


def load_metric() -> evaluate.EvaluationModule:
    """The sacreBLEU BLEU + chrF metric, loaded by path (no Hub access)."""
    return evaluate.load(str(SACREBLEU_CHRF_PATH))
