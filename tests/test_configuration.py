"""Every invalid configuration value is refused with a ValueError naming the field and what it allows."""

import json

import pytest
from transformers import AutoConfig

from hf_rnn_seq2seq import ATTENTION_TYPES, RNNSeq2SeqConfig

INVALID = [
    ("attention_type", "multihead", "attention_type must be one of"),
    ("attention_type", None, "attention_type must be one of"),
    ("rnn_type", "transformer", "rnn_type must be one of"),
    ("vocab_size", 0, "vocab_size must be a positive integer"),
    ("embedding_dim", -4, "embedding_dim must be a positive integer"),
    ("hidden_size", 0, "hidden_size must be a positive integer"),
    ("hidden_size", 2.5, "hidden_size must be a positive integer"),
    ("encoder_hidden_size", 0, "encoder_hidden_size must be a positive integer"),
    ("num_encoder_layers", 0, "num_encoder_layers must be a positive integer"),
    ("num_decoder_layers", True, "num_decoder_layers must be a positive integer"),
    ("attention_hidden_size", -1, "attention_hidden_size must be a positive integer"),
    ("dropout", 1.0, r"dropout must be a number in \[0, 1\)"),
    ("dropout", -0.1, r"dropout must be a number in \[0, 1\)"),
    ("label_smoothing", 1.5, r"label_smoothing must be a number in \[0, 1\)"),
    ("initializer_range", 0, "initializer_range must be a positive number"),
    ("bidirectional_encoder", "yes", "bidirectional_encoder must be true or false"),
    ("input_feeding", 1, "input_feeding must be true or false"),
    ("tie_word_embeddings", None, "tie_word_embeddings must be true or false"),
    ("use_cache", "no", "use_cache must be true or false"),
    ("pad_token_id", 100, r"pad_token_id must be an integer in \[0, vocab_size=100\)"),
    ("eos_token_id", -1, "eos_token_id must be an integer in"),
    ("bos_token_id", None, "bos_token_id must be an integer in"),
    ("decoder_start_token_id", 1000, "decoder_start_token_id must be an integer in"),
    ("is_encoder_decoder", False, "is_encoder_decoder must be true"),
    ("attentional_size", 0, "attentional_size must be a positive integer"),
    ("attention_query_bias", "no", "attention_query_bias must be true or false"),
    ("shared_bridge", None, "shared_bridge must be true or false"),
    ("source_vocab_size", 50, "source_vocab_size must be null or an integer of at least vocab_size"),
    ("source_vocab_size", 1.5e3, "source_vocab_size must be null or an integer of at least vocab_size"),
    ("decoder_type", "conditional", "decoder_type must be one of"),
    ("decoder_init", "mean", "decoder_init must be one of"),
    ("deep_output", 1, "deep_output must be true or false"),
]


@pytest.mark.parametrize("settings", [dict(rnn_type="lstm", attention_type="bahdanau"), dict(attention_type="none"),
                                      dict(attention_type="luong_general")])
def test_the_conditional_gru_needs_gru_cells_and_the_additive_scorer(settings):
    with pytest.raises(ValueError, match=r"decoder_type='cgru' \(the conditional GRU\) needs rnn_type='gru' and "):
        RNNSeq2SeqConfig(vocab_size=100, decoder_type="cgru", **settings)
    assert RNNSeq2SeqConfig(vocab_size=100, decoder_type="cgru", attention_type="bahdanau").decoder_type == "cgru"


def test_a_tied_output_layer_needs_the_embedding_width_and_one_table():
    with pytest.raises(ValueError, match=r"tie_word_embeddings needs attentional_size \(512\) equal to embedding_dim"):
        RNNSeq2SeqConfig(attentional_size=512)
    with pytest.raises(ValueError, match="tie_word_embeddings with a separate source vocabulary"):
        RNNSeq2SeqConfig(vocab_size=100, source_vocab_size=120)
    config = RNNSeq2SeqConfig(vocab_size=100, source_vocab_size=120, attentional_size=512, tie_word_embeddings=False)
    assert (config.source_vocab_size, config.attentional_size) == (120, 512)


@pytest.mark.parametrize("field,value,message", INVALID)
def test_invalid_value_raises_value_error_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        RNNSeq2SeqConfig(**{"vocab_size": 100, field: value})


def test_luong_dot_needs_matching_encoder_and_decoder_sizes():
    with pytest.raises(ValueError, match=r"luong_dot.*encoder_hidden_size \* directions \(1024\).*hidden_size \(512\)"):
        RNNSeq2SeqConfig(attention_type="luong_dot", hidden_size=512)
    assert RNNSeq2SeqConfig(attention_type="luong_dot", hidden_size=512, encoder_hidden_size=256).encoder_output_size == 512


def test_error_lists_the_allowed_attention_types():
    with pytest.raises(ValueError) as error:
        RNNSeq2SeqConfig(attention_type="luong")
    assert all(name in str(error.value) for name in ATTENTION_TYPES)


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_valid_configs_round_trip_through_json(attention_type, tmp_path):
    config = RNNSeq2SeqConfig(
        attention_type=attention_type, encoder_hidden_size=256, input_feeding=True, label_smoothing=0.1
    )
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is RNNSeq2SeqConfig
    def fields(c):
        return {k: v for k, v in c.to_dict().items() if k != "_name_or_path"}

    assert fields(loaded) == fields(config)
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"]["AutoConfig"].endswith("RNNSeq2SeqConfig")


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("attention_type", "luong_bogus", "attention_type must be one of"),
        ("dropout", 2, "dropout must be"),
        ("num_encoder_layers", 0, "num_encoder_layers must be a positive integer"),
        # Values valid alone, inconsistent with the rest of the file:
        ("attention_type", "luong_dot", r"luong_dot.*scores decoder states against encoder states directly"),
        ("vocab_size", 2, r"eos_token_id must be an integer in \[0, vocab_size=2\)"),
    ],
)
def test_hand_edited_config_json_is_refused_on_load(field, value, message, tmp_path):
    RNNSeq2SeqConfig().save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    values = json.loads(path.read_text())
    values[field] = value
    path.write_text(json.dumps(values))
    with pytest.raises(ValueError, match=message):
        AutoConfig.from_pretrained(tmp_path)


def test_config_changed_after_construction_is_refused_on_save(tmp_path):
    config = RNNSeq2SeqConfig()
    config.attention_type = "bahdanou"
    with pytest.raises(ValueError, match="attention_type must be one of"):
        config.save_pretrained(tmp_path)


def test_defaults_follow_the_special_token_convention():
    config = RNNSeq2SeqConfig()
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (0, 1, 2)
    assert config.decoder_start_token_id == config.bos_token_id
    assert config.is_encoder_decoder and config.model_type == "rnn_seq2seq"


@pytest.mark.parametrize("settings", [dict(), dict(decoder_type="cgru", attention_type="bahdanau",
                                                   decoder_init="encoder_final", encoder_hidden_size=256)])
def test_layer_normalisation_is_for_the_conditional_gru_with_a_bridge(settings):
    with pytest.raises(ValueError, match=r"layer_norm is implemented for the conditional GRU decoder"):
        RNNSeq2SeqConfig(vocab_size=100, layer_norm=True, **settings)
