"""Write a model folder as an ONNX translator folder: encoder.onnx, decoder_step.onnx (graphs.py), tokenizer.json,
onnx_config.json (ids, sizes, graph inputs and outputs, decoding settings) and onnx_translator.py (translator.py),
which runs it with onnxruntime, numpy and tokenizers alone. `int8=True` quantises the graphs' matrix products
(onnxruntime's dynamic quantisation: int8 weights, activations quantised per call).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import torch
from transformers import GenerationConfig

from ..translation import MAX_SOURCE_LENGTH, load_model
from . import translator
from .graphs import (
    DecoderStepGraph,
    EncoderGraph,
    decoder_inputs,
    decoder_outputs,
    encoder_outputs,
    example_inputs,
)

OPSET = 17  # onnxruntime runs it from 1.14 on
ENCODER_FILE, DECODER_FILE, TOKENIZER_FILE = "encoder.onnx", "decoder_step.onnx", "tokenizer.json"
# generate() settings the translator follows (translator.py), and those it does not: a model whose generation
# config sets one of these to anything but its neutral value is refused.
FOLLOWED = (
    "num_beams", "max_length", "max_new_tokens", "length_penalty", "early_stopping", "num_return_sequences",
    "min_length", "min_new_tokens", "suppress_tokens", "begin_suppress_tokens",
)  # fmt: skip
NOT_FOLLOWED = {
    "do_sample": False, "repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0, "bad_words_ids": None, "forced_bos_token_id": None,
    "forced_eos_token_id": None, "num_beam_groups": 1, "diversity_penalty": 0.0, "sequence_bias": None,
    "exponential_decay_length_penalty": None, "renormalize_logits": False, "remove_invalid_values": False,
    "force_words_ids": None, "constraints": None,
}  # fmt: skip
# Dimensions that vary from call to call, by graph input or output name.
DYNAMIC = {
    "input_ids": {0: "rows", 1: "tokens"},
    "attention_mask": {0: "sentences", 1: "source_length"},
    "encoder_states": {0: "sentences", 1: "source_length"},
    "keys": {0: "sentences", 1: "source_length"},
    "values": {0: "sentences", 1: "source_length"},
    "hidden": {1: "rows"},
    "next_hidden": {1: "rows"},
    "attentional": {0: "rows"},
    "next_attentional": {0: "rows"},
    "log_probs": {0: "rows"},
    "top_k": {0: "k"},
    "top_scores": {0: "rows", 1: "k"},
    "top_tokens": {0: "rows", 1: "k"},
    "attention": {0: "rows", 1: "source_length"},
}


def check_exportable(config) -> None:
    """Refuse a model whose computation the graphs do not cover yet, naming the setting."""
    if config.decoder_init.startswith("encoder_final"):
        raise ValueError(
            f"decoder_init={config.decoder_init!r} (a decoder that starts from the encoder's final states, as OpenNMT "
            "models imported here do) is not covered by the ONNX export yet: its encoder runs over packed sequences"
        )
    if config.layer_norm or config.zero_start_embedding:
        raise ValueError(
            f"layer_norm={config.layer_norm}, zero_start_embedding={config.zero_start_embedding} (Marian's models): "
            "not covered by the ONNX export yet"
        )
    if config.position_encoding != "none":
        raise ValueError(
            f"position_encoding={config.position_encoding!r} (eole's models) is not covered by the ONNX export yet"
        )


def generation_settings(model) -> dict:
    """The model's decoding settings that the translator follows; refuses one it would not follow."""
    generation = model.generation_config
    refused = [
        f"{name}={getattr(generation, name)!r}"
        for name, neutral in NOT_FOLLOWED.items()
        if getattr(generation, name, None) not in (None, neutral)
    ]
    if refused:
        raise ValueError(
            f"the model's generation config sets {', '.join(refused)}, which the onnxruntime translator does not "
            f"follow; it follows {', '.join(FOLLOWED)}"
        )
    # What generate() uses for a setting the model's config leaves unset (transformers 5.x).
    defaults = GenerationConfig._get_default_generation_params()
    values = {name: getattr(generation, name, None) for name in FOLLOWED}
    return {name: defaults.get(name) if value is None else value for name, value in values.items()}


def _export(graph, inputs: tuple, path: Path, input_names: list[str], output_names: list[str]) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about the model's input checks (Python branches on tensor values), which it leaves out;
        # the exporter about a fixed batch size (the encoder's RNNs get explicit start states: it stays variable,
        # tested) and about negative indices (the encoder summary's are lengths - 1 >= 0).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        warnings.filterwarnings("ignore", message="Exporting aten::index operator of advanced indexing")
        torch.onnx.export(
            graph, inputs, str(path), dynamo=False, opset_version=OPSET, input_names=input_names,
            output_names=output_names,
            dynamic_axes={name: DYNAMIC[name] for name in input_names + output_names if name in DYNAMIC},
        )  # fmt: skip


def _quantize(path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = path.with_suffix(".int8.onnx")
    quantize_dynamic(str(path), str(quantized), op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8)
    quantized.replace(path)


def export_onnx(model_name_or_path, output_dir, int8: bool = False, max_source_length: int = MAX_SOURCE_LENGTH):
    """Export `model_name_or_path` (a folder written by train.py or an importer, or a Hub id) to `output_dir`."""
    model, tokenizer = load_model(str(model_name_or_path))
    check_exportable(model.config)
    settings = generation_settings(model)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    encoder_inputs, step_inputs = example_inputs(model)
    _export(EncoderGraph(model), encoder_inputs, output_dir / ENCODER_FILE, ["input_ids", "attention_mask"],
            encoder_outputs(model))  # fmt: skip
    _export(DecoderStepGraph(model), step_inputs, output_dir / DECODER_FILE, decoder_inputs(model),
            decoder_outputs(model))  # fmt: skip
    if int8:
        for name in (ENCODER_FILE, DECODER_FILE):
            _quantize(output_dir / name)
    tokenizer.backend_tokenizer.save(str(output_dir / TOKENIZER_FILE))
    config = model.config
    onnx_config = {
        "format_version": translator.FORMAT_VERSION,
        "source": str(model_name_or_path),
        "int8": int8,
        "encoder": ENCODER_FILE,
        "decoder": DECODER_FILE,
        "tokenizer": TOKENIZER_FILE,
        "encoder_outputs": encoder_outputs(model),
        "decoder_inputs": decoder_inputs(model),
        "decoder_outputs": decoder_outputs(model),
        "attentional_size": config.attentional_size,
        "vocab_size": config.vocab_size,
        "pad_token_id": config.pad_token_id,
        "eos_token_id": config.eos_token_id,
        "decoder_start_token_id": config.decoder_start_token_id,
        "max_source_length": max_source_length,
        "generation": settings,
    }
    (output_dir / translator.CONFIG_FILE).write_text(json.dumps(onnx_config, indent=1) + "\n", encoding="utf-8")
    shutil.copyfile(translator.__file__, output_dir / "onnx_translator.py")
    return output_dir
