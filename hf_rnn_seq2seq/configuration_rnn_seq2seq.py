"""Configuration of the RNN (GRU or LSTM) encoder–decoder with attention.

Self-contained on purpose: this file is copied next to the weights for `trust_remote_code` loading, so it may
import only `transformers` (and `torch`), and it works with every transformers release from 4.46 to the newest
tested one (`modeling_rnn_seq2seq.TESTED_TRANSFORMERS`).
"""

from transformers import PretrainedConfig

ATTENTION_TYPES = ("none", "bahdanau", "luong_dot", "luong_general", "luong_concat")
RNN_TYPES = ("gru", "lstm")


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
        rnn_type: the recurrent cell of encoder and decoder, one of `RNN_TYPES`: "gru" or "lstm" (whose decoder
            state carries [h; c]).
        attention_type: one of `ATTENTION_TYPES`: "none" (the fixed-context model of Cho et al. 2014), "bahdanau"
            (additive, Bahdanau et al. 2015), "luong_dot", "luong_general" or "luong_concat" (Luong et al. 2015).
        attention_hidden_size: width of the additive scorer's hidden layer ("bahdanau", "luong_concat"; default
            `hidden_size`).
        attention_query_bias: give the additive scorer's query projection a bias ("bahdanau", "luong_concat").
        shared_bridge: the bridge computes one `hidden_size`-wide state that starts every decoder layer (an LSTM's h
            and c alike), as JoeyNMT's does; by default it computes a state of its own for each layer (and h and c).
        input_feeding: feed the previous attentional vector into the next decoder step (Luong et al. 2015, §3.3).
        dropout: dropout on embeddings, between RNN layers and on the attentional vector.
        label_smoothing: label smoothing of the cross-entropy loss computed from `labels` (Szegedy et al. 2016).
        initializer_range: standard deviation of the embedding (and untied output layer) initialisation.
        tie_word_embeddings: share the output layer with the embedding table (Press & Wolf 2017).
        use_cache: return the recurrent decoder state (`past_key_values`) so that generation runs one step at a time.
    """

    model_type = "rnn_seq2seq"
    _auto_class = "AutoConfig"  # save_pretrained copies this file beside the weights
    keys_to_ignore_at_inference = ["past_key_values", "cache"]  # the decoder state's name before / from 5.24

    def __init__(
        self,
        vocab_size: int = 8000,
        source_vocab_size: int | None = None,
        embedding_dim: int = 256,
        attentional_size: int | None = None,
        hidden_size: int = 512,
        encoder_hidden_size: int | None = None,
        num_encoder_layers: int = 1,
        num_decoder_layers: int = 1,
        bidirectional_encoder: bool = True,
        rnn_type: str = "gru",
        attention_type: str = "luong_general",
        attention_hidden_size: int | None = None,
        attention_query_bias: bool = True,
        shared_bridge: bool = False,
        input_feeding: bool = False,
        dropout: float = 0.1,
        label_smoothing: float = 0.0,
        initializer_range: float = 0.1,
        tie_word_embeddings: bool = True,
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
        self.rnn_type = rnn_type
        self.attention_type = attention_type
        self.attention_hidden_size = hidden_size if attention_hidden_size is None else attention_hidden_size
        self.attention_query_bias = attention_query_bias
        self.shared_bridge = shared_bridge
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
        for field in (
            "vocab_size",
            "embedding_dim",
            "attentional_size",
            "hidden_size",
            "encoder_hidden_size",
            "num_encoder_layers",
            "num_decoder_layers",
            "attention_hidden_size",
        ):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"RNNSeq2SeqConfig.{field} must be a positive integer, got {value!r}")
        for field in (
            "bidirectional_encoder",
            "input_feeding",
            "attention_query_bias",
            "shared_bridge",
            "tie_word_embeddings",
            "use_cache",
        ):
            if not isinstance(getattr(self, field), bool):
                raise ValueError(f"RNNSeq2SeqConfig.{field} must be true or false, got {getattr(self, field)!r}")
        if self.rnn_type not in RNN_TYPES:
            raise ValueError(f"RNNSeq2SeqConfig.rnn_type must be one of {RNN_TYPES}, got {self.rnn_type!r}")
        if self.attention_type not in ATTENTION_TYPES:
            raise ValueError(
                f"RNNSeq2SeqConfig.attention_type must be one of {ATTENTION_TYPES}, got {self.attention_type!r}"
            )
        for field in ("dropout", "label_smoothing"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"RNNSeq2SeqConfig.{field} must be a number in [0, 1), got {value!r}")
        if isinstance(self.initializer_range, bool) or not isinstance(self.initializer_range, (int, float)) or (
            self.initializer_range <= 0
        ):
            raise ValueError(f"RNNSeq2SeqConfig.initializer_range must be a positive number, got {self.initializer_range!r}")
        if self.source_vocab_size is not None and (
            isinstance(self.source_vocab_size, bool)
            or not isinstance(self.source_vocab_size, int)
            or self.source_vocab_size < self.vocab_size
        ):
            raise ValueError(
                "RNNSeq2SeqConfig.source_vocab_size must be null or an integer of at least vocab_size "
                f"({self.vocab_size}): the tokenizer's ids cover both vocabularies; got {self.source_vocab_size!r}"
            )
        if self.tie_word_embeddings and self.attentional_size != self.embedding_dim:
            raise ValueError(
                f"RNNSeq2SeqConfig.tie_word_embeddings needs attentional_size ({self.attentional_size}) equal to "
                f"embedding_dim ({self.embedding_dim}): the output layer would be the embedding table"
            )
        if self.tie_word_embeddings and self.source_vocab_size is not None:
            raise ValueError(
                "RNNSeq2SeqConfig.tie_word_embeddings with a separate source vocabulary (source_vocab_size) is not "
                "supported: set tie_word_embeddings=false (an output layer equal to the target table can be saved "
                "as its own tensor)"
            )
        if self.attention_type == "luong_dot" and self.encoder_output_size != self.hidden_size:
            raise ValueError(
                "RNNSeq2SeqConfig.attention_type='luong_dot' scores decoder states against encoder states directly, "
                f"so encoder_hidden_size * directions ({self.encoder_output_size}) must equal hidden_size "
                f"({self.hidden_size}); use luong_general or set encoder_hidden_size={self.hidden_size // 2} "
                "with a bidirectional encoder"
            )
        for field in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.vocab_size:
                raise ValueError(
                    f"RNNSeq2SeqConfig.{field} must be an integer in [0, vocab_size={self.vocab_size}), got {value!r}"
                )
        if not self.is_encoder_decoder:
            raise ValueError("RNNSeq2SeqConfig.is_encoder_decoder must be true: this is an encoder–decoder model")


__all__ = ["RNNSeq2SeqConfig"]
