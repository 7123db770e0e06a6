"""hf-rnn-seq2seq: the GRU encoder–decoder with attention as a first-class transformers model.

Importing the package registers the classes with `AutoConfig`, `AutoModel` and `AutoModelForSeq2SeqLM`. The classes
mark themselves for `save_pretrained` to write an `auto_map` plus the model code, so saved folders also load with
`trust_remote_code=True` where this package is not installed. It also registers the pipeline task
"seq2seq-translation" (transformers 5 removed "translation").
"""

from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

from . import pipeline_rnn_seq2seq  # registers the "seq2seq-translation" pipeline task
from .configuration_rnn_seq2seq import ATTENTION_TYPES, RNNSeq2SeqConfig
from .modeling_rnn_seq2seq import (
    RNNDecoderState,
    RNNSeq2SeqForConditionalGeneration,
    RNNSeq2SeqModel,
    RNNSeq2SeqPreTrainedModel,
)

AutoConfig.register(RNNSeq2SeqConfig.model_type, RNNSeq2SeqConfig, exist_ok=True)
AutoModel.register(RNNSeq2SeqConfig, RNNSeq2SeqModel, exist_ok=True)
AutoModelForSeq2SeqLM.register(RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration, exist_ok=True)

__all__ = [
    "ATTENTION_TYPES",
    "RNNDecoderState",
    "RNNSeq2SeqConfig",
    "RNNSeq2SeqForConditionalGeneration",
    "RNNSeq2SeqModel",
    "RNNSeq2SeqPreTrainedModel",
]
