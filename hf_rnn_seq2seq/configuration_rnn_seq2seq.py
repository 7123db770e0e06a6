"""Configuration of the RNN (GRU or LSTM) encoder–decoder with attention.

Self-contained on purpose: this file is copied next to the weights for `trust_remote_code` loading, so it may
import only `transformers` (and `torch`), and it works with every transformers release from 4.46 to the newest
tested one (`modeling_rnn_seq2seq.TESTED_TRANSFORMERS`).
"""

from transformers import PretrainedConfig

ATTENTION_TYPES = ("none", "bahdanau", "luong_dot", "luong_general", "luong_concat")
RNN_TYPES = ("gru", "lstm")
DECODER_INITS = ("bridge", "mean_bridge", "encoder_final", "encoder_final_relu")
DECODER_TYPES = ("stacked", "cgru")
ENCODER_STACKINGS = ("joined", "per_direction")
ATTENTIONAL_ACTIVATIONS = ("tanh", "none")
POSITION_ENCODINGS = ("none", "sinusoidal")
VOCAB_SIZE = 8000  # the default joint BPE vocabulary, the training recipe's (train.py --vocab_size)

_SIZE_FIELDS = (
    "vocab_size", "embedding_dim", "attentional_size", "hidden_size", "encoder_hidden_size", "num_encoder_layers",
    "num_decoder_layers", "attention_hidden_size",
)  # fmt: skip
_SWITCH_FIELDS = (
    "bidirectional_encoder", "input_feeding", "attention_query_bias", "shared_bridge", "tie_word_embeddings",
    "use_cache", "output_bias", "deep_output", "zero_start_embedding", "layer_norm",
)  # fmt: skip
_TOKEN_ID_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # Python's bool is an int; a config's is not


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _field_rules(fields, allowed, must_be: str) -> list[tuple]:
    """A rule per field: `allowed(value, config)` must hold, or "FIELD must be MUST_BE, got VALUE" (`must_be` is
    formatted with `config`)."""
    return [
        (
            lambda config, field=field: not allowed(getattr(config, field), config),
            lambda config, field=field: (
                f"{field} must be {must_be.format(config=config)}, got {getattr(config, field)!r}"
            ),
        )
        for field in fields
    ]


# (broken(config), message(config)) in the order checked; the first broken rule is the error. Each field's own values
# come before the rules that compare fields, so that those compare valid values.
_RULES = (
    *_field_rules(_SIZE_FIELDS, lambda value, config: _is_integer(value) and value > 0, "a positive integer"),
    *_field_rules(_SWITCH_FIELDS, lambda value, config: isinstance(value, bool), "true or false"),
    *_field_rules(["rnn_type"], lambda value, config: value in RNN_TYPES, f"one of {RNN_TYPES}"),
    *_field_rules(["attention_type"], lambda value, config: value in ATTENTION_TYPES, f"one of {ATTENTION_TYPES}"),
    *_field_rules(["decoder_init"], lambda value, config: value in DECODER_INITS, f"one of {DECODER_INITS}"),
    *_field_rules(["decoder_type"], lambda value, config: value in DECODER_TYPES, f"one of {DECODER_TYPES}"),
    *_field_rules(
        ["encoder_stacking"], lambda value, config: value in ENCODER_STACKINGS, f"one of {ENCODER_STACKINGS}"
    ),
    *_field_rules(
        ["position_encoding"], lambda value, config: value in POSITION_ENCODINGS, f"one of {POSITION_ENCODINGS}"
    ),
    *_field_rules(
        ["attentional_activation"],
        lambda value, config: value in ATTENTIONAL_ACTIVATIONS,
        f"one of {ATTENTIONAL_ACTIVATIONS}",
    ),
    *_field_rules(
        ["dropout", "label_smoothing"],
        lambda value, config: _is_number(value) and 0.0 <= value < 1.0,
        "a number in [0, 1)",
    ),
    *_field_rules(["initializer_range"], lambda value, config: _is_number(value) and value > 0, "a positive number"),
    (
        lambda config: config.source_vocab_size is not None
        and not (_is_integer(config.source_vocab_size) and config.source_vocab_size >= config.vocab_size),
        lambda config: "source_vocab_size must be null or an integer of at least vocab_size "
        f"({config.vocab_size}): the tokenizer's ids cover both vocabularies; got {config.source_vocab_size!r}",
    ),
    (
        lambda config: config.tie_word_embeddings and config.attentional_size != config.embedding_dim,
        lambda config: f"tie_word_embeddings needs attentional_size ({config.attentional_size}) equal to "
        f"embedding_dim ({config.embedding_dim}): the output layer would be the embedding table",
    ),
    (
        lambda config: config.tie_word_embeddings and config.source_vocab_size is not None,
        lambda config: "tie_word_embeddings with a separate source vocabulary (source_vocab_size) is not supported: "
        "set tie_word_embeddings=false (an output layer equal to the target table can be saved as its own tensor)",
    ),
    (
        lambda config: config.attention_type == "luong_dot" and config.encoder_output_size != config.hidden_size,
        lambda config: "attention_type='luong_dot' scores decoder states against encoder states directly, so "
        f"encoder_hidden_size * directions ({config.encoder_output_size}) must equal hidden_size "
        f"({config.hidden_size}); use luong_general or set encoder_hidden_size={config.hidden_size // 2} with a "
        "bidirectional encoder",
    ),
    (
        lambda config: config.decoder_type == "cgru"
        and (config.rnn_type, config.attention_type) != ("gru", "bahdanau"),
        lambda config: "decoder_type='cgru' (the conditional GRU) needs rnn_type='gru' and attention_type='bahdanau' "
        f"(the additive scorer, which its first cell's state queries), got {config.rnn_type!r} and "
        f"{config.attention_type!r}",
    ),
    (
        lambda config: config.layer_norm
        and (config.decoder_type != "cgru" or config.decoder_init not in ("bridge", "mean_bridge")),
        lambda config: "layer_norm is implemented for the conditional GRU decoder (decoder_type='cgru', Marian's) with "
        f"a bridge (decoder_init 'bridge' or 'mean_bridge'), got decoder_type={config.decoder_type!r}, "
        f"decoder_init={config.decoder_init!r}",
    ),
    (
        lambda config: config.decoder_init.startswith("encoder_final")
        and (config.num_encoder_layers, config.encoder_output_size)
        != (config.num_decoder_layers, config.hidden_size),
        lambda config: f"decoder_init={config.decoder_init!r} starts each decoder layer from the final state of the "
        f"encoder layer below it, so num_encoder_layers ({config.num_encoder_layers}) must equal num_decoder_layers "
        f"({config.num_decoder_layers}) and encoder_hidden_size * directions ({config.encoder_output_size}) must "
        f"equal hidden_size ({config.hidden_size})",
    ),
    (
        lambda config: config.position_encoding == "sinusoidal" and config.embedding_dim % 2,
        lambda config: f"position_encoding='sinusoidal' needs an even embedding_dim, got {config.embedding_dim}",
    ),
    *_field_rules(
        _TOKEN_ID_FIELDS,
        lambda value, config: _is_integer(value) and 0 <= value < config.vocab_size,
        "an integer in [0, vocab_size={config.vocab_size})",
    ),
    (
        lambda config: not config.is_encoder_decoder,
        lambda config: "is_encoder_decoder must be true: this is an encoder–decoder model",
    ),
)


class RNNSeq2SeqConfig(PretrainedConfig):
    r"""
    Configuration of [`RNNSeq2SeqModel`] / [`RNNSeq2SeqForConditionalGeneration`].

    Args:
        vocab_size: size of the vocabulary shared by source and target (joint BPE); one embedding table serves
            the encoder, the decoder and (with `tie_word_embeddings`) the output layer. With `source_vocab_size`, the
            target's: the decoder's embedding table and the output layer.
        source_vocab_size: rows of a separate source embedding table for the encoder, for a source vocabulary apart
            from the target's (models imported from toolkits with two vocabularies); ids from `vocab_size` up then
            occur in sources only. Default: none, the encoder shares the decoder's table.
        embedding_dim: width of the token embeddings.
        attentional_size: width of the attentional vector that feeds the output layer (and, with input feeding, the
            next step). Default: `embedding_dim`, which lets the output layer share the embedding table.
        hidden_size: width of the decoder RNN state.
        encoder_hidden_size: width of each encoder RNN direction (default: `hidden_size`). The encoder states the
            decoder attends to are `encoder_hidden_size * (2 if bidirectional_encoder else 1)` wide.
        num_encoder_layers: stacked encoder RNN layers.
        num_decoder_layers: stacked decoder RNN layers.
        bidirectional_encoder: read the source in both directions.
        encoder_stacking: how a bidirectional encoder's layers stack, one of `ENCODER_STACKINGS`: "joined" (each layer
            of each direction reads both directions' states of the layer below) or "per_direction" (each direction is
            a stack of its own, joined only at the top: Marian's and Nematus's deep encoders).
        rnn_type: the recurrent cell of encoder and decoder, one of `RNN_TYPES`: "gru" or "lstm" (whose decoder
            state carries [h; c]).
        attention_type: one of `ATTENTION_TYPES`: "none" (the fixed-context model of Cho et al. 2014), "bahdanau"
            (additive, Bahdanau et al. 2015), "luong_dot", "luong_general" or "luong_concat" (Luong et al. 2015).
        attention_hidden_size: width of the additive scorer's hidden layer ("bahdanau", "luong_concat"; default
            `hidden_size`).
        attention_query_bias: give the additive scorer's query projection a bias ("bahdanau", "luong_concat").
        decoder_init: how the decoder's start state s_0 comes from the encoder, one of `DECODER_INITS`: "bridge"
            (Bahdanau et al. 2015, A.2.2; JoeyNMT): s_0 = tanh(W_b [h_fwd_last; h_bwd_first] + b_b) from the top
            encoder layer, for every decoder layer; "mean_bridge" (Nematus, Marian): the same from the mean of the top
            encoder layer's states over the source's real positions; "encoder_final" (OpenNMT-py, eole): decoder
            layer l starts from encoder layer l's final state, both directions joined (an LSTM's h and c alike);
            "encoder_final_relu" (their `bridge` option): those final states through a linear layer and ReLU (one for
            h, one for c).
        shared_bridge: the bridge computes one `hidden_size`-wide state that starts every decoder layer (an LSTM's h
            and c alike), as JoeyNMT's does; by default it computes a state of its own for each layer (and h and c).
        decoder_type: the arrangement of a decoder step, one of `DECODER_TYPES`: "stacked" (stacked RNN layers with
            Bahdanau's or Luong's attention, as `attention_type` says) or "cgru" (the conditional GRU of Nematus and
            Marian's `s2s`, Sennrich et al. 2017: a GRU step on the previous target word, additive attention queried
            with its state, a second GRU step on the context vector; the layers above read its state).
        deep_output: the attentional vector also reads the previous target word's embedding:
            h~_t = tanh(W_c c_t + W_s s_t + W_y y_{t-1} + b) (the deep output of Pascanu et al. 2014 as Nematus and
            Marian build it).
        zero_start_embedding: the decoder's first input is a zero vector instead of the start token's embedding
            (Marian, Nematus).
        layer_norm: layer normalisation (Ba et al. 2016) where Marian applies it: in every GRU cell over its input
            and its recurrent product (each over the 3H gates, gain only, before the biases), in the additive scorer
            over the projected encoder states and the projected query, in the bridge over its product, and in the
            attentional layer over each input's product (c_t, s_t, y_{t-1}) before the sum; epsilon 1e-9.
        attentional_activation: the attentional vector's nonlinearity, one of `ATTENTIONAL_ACTIVATIONS`: "tanh"
            (Luong et al. 2015, eq. 5) or "none" (OpenNMT's `mlp` attention: a linear layer only).
        position_encoding: one of `POSITION_ENCODINGS`: "none", or "sinusoidal" (eole's default for RNNs, OpenNMT-py's
            `position_encoding`): every embedding is scaled by sqrt(embedding_dim) and the sinusoid of its position
            added (Vaswani et al. 2017, sin and cos interleaved), source positions from 0, target positions from 0 at
            the start token.
        input_feeding: feed the previous attentional vector into the next decoder step (Luong et al. 2015, §3.3).
        dropout: dropout on embeddings, between RNN layers and on the attentional vector.
        label_smoothing: label smoothing of the cross-entropy loss computed from `labels` (Szegedy et al. 2016).
        initializer_range: standard deviation of the embedding (and untied output layer) initialisation.
        tie_word_embeddings: share the output layer with the embedding table (Press & Wolf 2017).
        output_bias: give the output layer a bias (OpenNMT's generator has one).
        use_cache: return the recurrent decoder state (`past_key_values`) so that generation runs one step at a time.
    """

    model_type = "rnn_seq2seq"
    _auto_class = "AutoConfig"  # save_pretrained copies this file beside the weights
    keys_to_ignore_at_inference = ["past_key_values", "cache"]  # the decoder state's name before / from 5.24

    def __init__(
        self,
        vocab_size: int = VOCAB_SIZE,
        source_vocab_size: int | None = None,
        embedding_dim: int = 256,
        attentional_size: int | None = None,
        hidden_size: int = 512,
        encoder_hidden_size: int | None = None,
        num_encoder_layers: int = 1,
        num_decoder_layers: int = 1,
        bidirectional_encoder: bool = True,
        encoder_stacking: str = "joined",
        rnn_type: str = "gru",
        attention_type: str = "luong_general",
        attention_hidden_size: int | None = None,
        attention_query_bias: bool = True,
        shared_bridge: bool = False,
        decoder_init: str = "bridge",
        decoder_type: str = "stacked",
        deep_output: bool = False,
        zero_start_embedding: bool = False,
        layer_norm: bool = False,
        attentional_activation: str = "tanh",
        position_encoding: str = "none",
        input_feeding: bool = False,
        dropout: float = 0.1,
        label_smoothing: float = 0.0,
        initializer_range: float = 0.1,
        tie_word_embeddings: bool = True,
        output_bias: bool = False,
        pad_token_id: int = 0,
        bos_token_id: int = 1,
        eos_token_id: int = 2,
        decoder_start_token_id: int | None = None,
        use_cache: bool = True,
        is_encoder_decoder: bool = True,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.source_vocab_size = source_vocab_size
        self.embedding_dim = embedding_dim
        self.attentional_size = embedding_dim if attentional_size is None else attentional_size
        self.hidden_size = hidden_size
        self.encoder_hidden_size = hidden_size if encoder_hidden_size is None else encoder_hidden_size
        self.num_encoder_layers = num_encoder_layers
        self.num_decoder_layers = num_decoder_layers
        self.bidirectional_encoder = bidirectional_encoder
        self.encoder_stacking = encoder_stacking
        self.rnn_type = rnn_type
        self.attention_type = attention_type
        self.attention_hidden_size = hidden_size if attention_hidden_size is None else attention_hidden_size
        self.attention_query_bias = attention_query_bias
        self.shared_bridge = shared_bridge
        self.decoder_init = decoder_init
        self.decoder_type = decoder_type
        self.deep_output = deep_output
        self.zero_start_embedding = zero_start_embedding
        self.layer_norm = layer_norm
        self.attentional_activation = attentional_activation
        self.position_encoding = position_encoding
        self.output_bias = output_bias
        self.input_feeding = input_feeding
        self.dropout = dropout
        self.label_smoothing = label_smoothing
        self.initializer_range = initializer_range
        self.use_cache = use_cache
        # Through the base class, as transformers' own configs do: 4.x's base __init__ resets these to its defaults
        # unless it is handed them; 5.x stores them as attributes.
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            decoder_start_token_id=bos_token_id if decoder_start_token_id is None else decoder_start_token_id,
            tie_word_embeddings=tie_word_embeddings,
            is_encoder_decoder=is_encoder_decoder,
            **kwargs,
        )
        self.validate()

    @property
    def encoder_output_size(self) -> int:
        """Width of the encoder states that the decoder attends to."""
        return self.encoder_hidden_size * (2 if self.bidirectional_encoder else 1)

    def validate(self):
        """Raise `ValueError` naming the field and what it allows; runs on construction (so also on a hand-edited
        config.json), and again before `save_pretrained` from transformers 5.5 on (whose base class has checks too)."""
        base_validate = getattr(super(), "validate", None)  # transformers >= 5.5
        if base_validate is not None:
            base_validate()
        for broken, message in _RULES:
            if broken(self):
                raise ValueError(f"RNNSeq2SeqConfig.{message(self)}")


__all__ = ["RNNSeq2SeqConfig"]
