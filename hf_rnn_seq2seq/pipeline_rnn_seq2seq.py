"""A `transformers.pipeline` task for translation with an encoder–decoder model.

transformers 5 removed its seq2seq text tasks ("translation", "text2text-generation", "summarization": `pipeline()`
raises a KeyError naming them as removed). The one text-generation task left, "text-generation", is for causal
language models and cannot serve an encoder–decoder: it switches the tokenizer to left padding (which the
recurrent encoder refuses) and cuts the prompt's length off the front of every output, which for an
encoder–decoder is the translation itself, not prompt plus continuation.

This module registers the library's own extension point instead: `PIPELINE_REGISTRY.register_pipeline` with the
task name `TASK` ("seq2seq-translation"; a removed name cannot be registered, `pipeline()` refuses it before it
looks at the registry). After `import hf_rnn_seq2seq.pipeline_rnn_seq2seq`:

    translator = pipeline("seq2seq-translation", model=model, tokenizer=tokenizer)
    translator(["Ein Hund läuft.", "Zwei Männer."], batch_size=8, num_beams=5)
    # [{"translation_text": "..."}, {"translation_text": "..."}]

`translator.save_pretrained(folder)` / `translator.push_to_hub(repo_id)` also write this file next to the model
and record it under `custom_pipelines` in config.json, so that where this package is not installed
`pipeline(model=repo_id, trust_remote_code=True)` builds the same pipeline from the repository (the task is
inferred, since the repository defines exactly one). Self-contained on purpose: imports only torch/transformers.
"""

from transformers import AutoModelForSeq2SeqLM, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

TASK = "seq2seq-translation"


class Seq2SeqTranslationPipeline(Pipeline):
    """Translate text with any encoder–decoder model that `generate()`s; one result per input, in input order.

    Call arguments (also accepted when the pipeline is built): `batch_size`, `truncation` / `max_source_length`
    (cut long sources to that many tokens), `return_tensors` (token ids instead of text), and any `generate()`
    argument (`num_beams`, `max_new_tokens`, `do_sample`, `num_return_sequences`, ...; defaults come from the
    model's generation_config.json). Texts are decoded without special tokens and cut at the first end-of-sentence
    token (finished beams are padded with it when `pad_token_id` is 0).

    Returns, like transformers 4's translation pipeline: for one string, a list of `{"translation_text": str}` (one
    per returned sequence); for a list of strings, one such dict per string, or one list per string when
    `num_return_sequences > 1`.
    """

    _pipeline_calls_generate = True
    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not getattr(self.model.config, "is_encoder_decoder", False):
            raise ValueError(f"{type(self.model).__name__} is not an encoder–decoder model: use 'text-generation'")
        if self.tokenizer is None:
            raise ValueError("the seq2seq-translation pipeline needs a tokenizer")

    def _sanitize_parameters(
        self, truncation=None, max_source_length=None, return_tensors=None, clean_up_tokenization_spaces=None,
        **generate_kwargs,
    ):
        preprocess_params = {}
        if truncation is not None:
            preprocess_params["truncation"] = truncation
        if max_source_length is not None:
            preprocess_params["truncation"] = True
            preprocess_params["max_length"] = max_source_length
        postprocess_params = {}
        if return_tensors is not None:
            postprocess_params["return_tensors"] = return_tensors
        if clean_up_tokenization_spaces is not None:
            postprocess_params["clean_up_tokenization_spaces"] = clean_up_tokenization_spaces
        return preprocess_params, generate_kwargs, postprocess_params

    def __call__(self, inputs, **kwargs):
        if isinstance(inputs, str):
            return super().__call__(inputs, **kwargs)
        if not all(isinstance(text, str) for text in inputs):
            raise TypeError("the seq2seq-translation pipeline translates a string or a list of strings")
        results = super().__call__(list(inputs), **kwargs)
        return [result[0] if len(result) == 1 else result for result in results]

    def preprocess(self, text, truncation=False, max_length=None):
        if not isinstance(text, str):
            raise TypeError(f"expected a string to translate, got {type(text).__name__}")
        encoded = self.tokenizer(text, return_tensors="pt", truncation=truncation, max_length=max_length)
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def _forward(self, model_inputs, **generate_kwargs):
        batch_size = model_inputs["input_ids"].shape[0]
        if hasattr(self, "_prepare_generate_kwargs"):  # transformers 5.23 on: the call's, the pipeline's and defaults
            generate_kwargs = self._prepare_generate_kwargs(generate_kwargs)
        else:  # earlier 5.x: the pipeline's prepared generation config, unless the call brings its own
            generate_kwargs = {"generation_config": self.generation_config, **generate_kwargs}
        output_ids = self.model.generate(**model_inputs, **generate_kwargs)
        # (batch * num_return_sequences, T) -> (batch, num_return_sequences, T): the pipeline unbatches on dim 0.
        return {"output_ids": output_ids.reshape(batch_size, -1, output_ids.shape[-1])}

    def postprocess(self, model_outputs, return_tensors=False, clean_up_tokenization_spaces=None):
        eos_token_id = self.tokenizer.eos_token_id
        records = []
        for ids in model_outputs["output_ids"][0].tolist():
            ids = ids[1:]  # the decoder start token
            if eos_token_id in ids:
                ids = ids[: ids.index(eos_token_id)]
            if return_tensors:
                records.append({"translation_token_ids": ids})
            else:
                text = self.tokenizer.decode(
                    ids, skip_special_tokens=True, clean_up_tokenization_spaces=clean_up_tokenization_spaces
                )
                records.append({"translation_text": text})
        return records


if TASK not in PIPELINE_REGISTRY.supported_tasks:  # a second import (e.g. as remote code) leaves the first in place
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=Seq2SeqTranslationPipeline, pt_model=AutoModelForSeq2SeqLM, type="text"
    )

__all__ = ["TASK", "Seq2SeqTranslationPipeline"]
