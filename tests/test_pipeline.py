"""`transformers.pipeline(...)` with the model: which task transformers 5 offers, and ours matching generate().

transformers 5 removed "translation" / "text2text-generation"; "text-generation" is causal-LM only and mangles an
encoder–decoder's output. `hf_rnn_seq2seq.pipeline_rnn_seq2seq` registers "seq2seq-translation" through the
library's PIPELINE_REGISTRY instead (its remote-code use from a Hub repository is in test_hub.py).
"""

import copy

import pytest
import torch
from transformers import pipeline, set_seed

from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration
from hf_rnn_seq2seq.pipeline_rnn_seq2seq import TASK, Seq2SeqTranslationPipeline
from hf_rnn_seq2seq.tokenization import train_bpe_tokenizer
from helpers import read

MAX_NEW_TOKENS = 10


@pytest.fixture(scope="module")
def model_and_tokenizer(multi30k_dir):
    """A joint BPE tokenizer trained on real Multi30k lines and a small random Bahdanau model."""
    tokenizer = train_bpe_tokenizer(read(multi30k_dir / "train.de.gz", 300) + read(multi30k_dir / "train.en.gz", 300),
                                    vocab_size=400)  # fmt: skip
    torch.manual_seed(0)
    config = RNNSeq2SeqConfig(vocab_size=len(tokenizer), embedding_dim=16, hidden_size=24, attention_type="bahdanau",
                              dropout=0.0)  # fmt: skip
    model = RNNSeq2SeqForConditionalGeneration(config).eval()
    model.generation_config.max_new_tokens = MAX_NEW_TOKENS
    return model, tokenizer


@pytest.fixture(scope="module")
def sentences(multi30k_dir):
    return read(multi30k_dir / "val.de.gz", 7)  # lengths differ, so batches are padded


def generate_texts(model, tokenizer, sentences, **kwargs):
    batch = tokenizer(sentences, return_tensors="pt", padding=True)
    with torch.no_grad():
        return tokenizer.batch_decode(model.generate(**batch, **kwargs), skip_special_tokens=True)


def test_transformers_5_removed_the_seq2seq_text_tasks(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    for task in ("translation", "translation_de_to_en", "text2text-generation", "summarization"):
        with pytest.raises(KeyError, match="has been removed from transformers|Unknown task"):  # 5.23 | 5.5
            pipeline(task, model=model, tokenizer=tokenizer)


def test_text_generation_pipeline_cannot_serve_an_encoder_decoder(model_and_tokenizer, sentences):
    model, tokenizer = model_and_tokenizer
    tokenizer = copy.deepcopy(tokenizer)
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    assert tokenizer.padding_side == "left"  # it switches to left padding, which the encoder refuses
    with pytest.raises(ValueError, match="right-padded"):
        generator(sentences[:2], batch_size=2)
    # Unbatched it runs, but it cuts the source's length (in tokens from transformers 5.23 on, before in characters of
    # the decoded source) off the front of the output: for an encoder–decoder that is the beginning of the
    # translation, not a prompt.
    sentence = "Ein Hund läuft."
    source = tokenizer(sentence, return_tensors="pt")
    generated = model.generate(**source, num_beams=1, max_new_tokens=MAX_NEW_TOKENS)[0]
    (output,) = generator(  # it defaults to sampling (and, before transformers 5.23, to 256 new tokens)
        sentence, return_full_text=False, num_beams=1, do_sample=False, max_new_tokens=MAX_NEW_TOKENS
    )
    translation = tokenizer.decode(generated, skip_special_tokens=True)
    cut_tokens = tokenizer.decode(generated[source["input_ids"].shape[1] :], skip_special_tokens=True)
    cut_characters = translation[len(tokenizer.decode(source["input_ids"][0], skip_special_tokens=True)) :]
    assert output["generated_text"] in (cut_tokens, cut_characters) and output["generated_text"] != translation


def test_pipeline_translates_a_batch_like_generate(model_and_tokenizer, sentences):
    model, tokenizer = model_and_tokenizer
    translator = pipeline(TASK, model=model, tokenizer=tokenizer)
    assert isinstance(translator, Seq2SeqTranslationPipeline)
    expected = generate_texts(model, tokenizer, sentences, num_beams=3)
    assert all(expected)
    for batch_size in (1, 3, len(sentences)):
        outputs = translator(sentences, batch_size=batch_size, num_beams=3)
        assert [output["translation_text"] for output in outputs] == expected, batch_size
    assert translator(sentences[2], num_beams=3) == [{"translation_text": expected[2]}]
    # Without arguments: the model's generation_config (greedy here), as generate() without arguments.
    greedy = generate_texts(model, tokenizer, sentences)
    assert [output["translation_text"] for output in translator(sentences, batch_size=4)] == greedy


def test_pipeline_returns_every_sequence_and_the_token_ids(model_and_tokenizer, sentences):
    model, tokenizer = model_and_tokenizer
    translator = pipeline(TASK, model=model, tokenizer=tokenizer, num_beams=4)  # generation settings at build time
    expected = generate_texts(model, tokenizer, sentences[:3], num_beams=4, num_return_sequences=2)
    outputs = translator(sentences[:3], batch_size=2, num_return_sequences=2)
    assert [[o["translation_text"] for o in per_sentence] for per_sentence in outputs] == [
        expected[0:2], expected[2:4], expected[4:6]
    ]
    (ids,) = translator(sentences[:1], return_tensors=True)
    generated = model.generate(**tokenizer(sentences[:1], return_tensors="pt"), num_beams=4)[0].tolist()[1:]
    if tokenizer.eos_token_id in generated:
        generated = generated[: generated.index(tokenizer.eos_token_id)]
    assert ids == {"translation_token_ids": generated}


def test_pipeline_sampling_and_truncation_match_generate(model_and_tokenizer, sentences):
    model, tokenizer = model_and_tokenizer
    translator = pipeline(TASK, model=model, tokenizer=tokenizer)
    # One string at a time: a list goes through a torch DataLoader, which draws from the global RNG itself.
    sampled = []
    for sentence in sentences[:3]:
        set_seed(7)
        (output,) = translator(sentence, do_sample=True, top_k=20, temperature=1.5)
        sampled.append(output["translation_text"])
        set_seed(7)
        assert sampled[-1] == generate_texts(model, tokenizer, [sentence], do_sample=True, top_k=20, temperature=1.5)[0]
    assert sampled != generate_texts(model, tokenizer, sentences[:3])  # it did sample, not decode greedily
    truncated = tokenizer(sentences[:1], return_tensors="pt", truncation=True, max_length=5)
    expected = tokenizer.batch_decode(model.generate(**truncated), skip_special_tokens=True)
    assert translator(sentences[0], max_source_length=5) == [{"translation_text": expected[0]}]


def test_pipeline_refuses_a_model_that_is_not_an_encoder_decoder_and_non_text_input(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    translator = pipeline(TASK, model=model, tokenizer=tokenizer)
    with pytest.raises(TypeError, match="string"):
        translator([1, 2])
    decoder_only = copy.deepcopy(model)
    object.__setattr__(decoder_only.config, "is_encoder_decoder", False)
    with pytest.raises(ValueError, match="not an encoder–decoder"):
        Seq2SeqTranslationPipeline(model=decoder_only, tokenizer=tokenizer)


def test_pipeline_loads_a_folder_in_bfloat16_and_translates_like_its_generate(model_and_tokenizer, sentences, tmp_path):
    model, tokenizer = model_and_tokenizer
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    translator = pipeline(TASK, model=str(tmp_path), dtype=torch.bfloat16)
    assert translator.model.dtype == torch.bfloat16
    bf16_model = RNNSeq2SeqForConditionalGeneration.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    expected = generate_texts(bf16_model, tokenizer, sentences, num_beams=3)
    assert [output["translation_text"] for output in translator(sentences, batch_size=4, num_beams=3)] == expected
