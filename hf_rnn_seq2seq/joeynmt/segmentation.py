"""JoeyNMT's vocabularies and segmentation as one `PreTrainedTokenizerFast`.

JoeyNMT keeps a source and a target vocabulary (`src_vocab.txt`, `trg_vocab.txt`: one token a line, the special
tokens first) and segments text at one of three levels: `word` (split at spaces), `bpe` with subword-nmt codes
(pieces of a word but the last end in the separator, "hel@@ lo") or `bpe` with a SentencePiece model. A token that is
not in a vocabulary reads as that vocabulary's `<unk>`.

The tokenizer written here segments as JoeyNMT does, and numbers the tokens in one id space: first the target
vocabulary in JoeyNMT's order (so target ids, special ids included, are JoeyNMT's), then the source vocabulary's other
tokens, then every other piece the segmentation can produce. The model's decoder and output layer cover the target
ids (`vocab_size`); its encoder has a row for every id (`source_vocab_size`), and the rows of tokens outside
JoeyNMT's source vocabulary are copies of its `<unk>` row, so each source id embeds exactly as JoeyNMT's lookup does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from ..tokenization import METASPACE
from .settings import JoeyNMTImportError, Segmentation, SpecialTokens


def read_vocabulary(path: Path, specials: SpecialTokens) -> list[str]:
    """JoeyNMT's `Vocabulary`: the special tokens, then the file's tokens, each once, in order (index = id)."""
    if not path.is_file():
        raise JoeyNMTImportError(f"vocabulary file {path} not found")
    tokens = path.read_text(encoding="utf-8").splitlines()
    itos = list(dict.fromkeys([*specials.tokens, *tokens]))
    for token, token_id in specials.ids.items():
        if itos.index(token) != token_id:
            raise JoeyNMTImportError(f"{path}: special token {token} is at id {itos.index(token)}, not {token_id}")
    return itos


@dataclass
class JoeyNMTTokenizer:
    """The converted tokenizer and how its ids relate to JoeyNMT's vocabularies."""

    tokenizer: PreTrainedTokenizerFast
    target_size: int  # ids below it are the target vocabulary's, in JoeyNMT's order
    source_ids: list[int]  # for each of our ids, JoeyNMT's source id (its <unk> for a token outside its vocabulary)
    pieces_outside_vocabulary: int  # pieces the segmentation can produce that neither vocabulary has


def build_tokenizer(segmentation: Segmentation, source_itos: list[str], target_itos: list[str],
                    specials: SpecialTokens, append_eos: bool = True) -> JoeyNMTTokenizer:
    """The tokenizer for `segmentation` over both vocabularies (see the module docstring for the id space);
    `append_eos`: end every encoded text with </s>, as JoeyNMT ends its sources (OpenNMT's have none)."""
    if segmentation.level == "word":
        joey_to_piece, pieces, backend = _word_level(segmentation)
    elif segmentation.tokenizer_type == "subword-nmt":
        joey_to_piece, pieces, backend = _subword_nmt(segmentation)
    else:
        joey_to_piece, pieces, backend = _sentencepiece(segmentation)

    special_set = set(specials.tokens)
    ordered = list(dict.fromkeys(
        [t if t in special_set else joey_to_piece(t) for t in target_itos]
        + [t if t in special_set else joey_to_piece(t) for t in source_itos]
    ))  # fmt: skip
    in_vocabulary = len(ordered)
    ordered = list(dict.fromkeys([*ordered, *pieces]))
    ids = {piece: i for i, piece in enumerate(ordered)}
    source_lookup = {t if t in special_set else joey_to_piece(t): i for i, t in enumerate(source_itos)}
    unk = specials.ids[specials.unk]
    source_ids = [source_lookup.get(piece, unk) for piece in ordered]

    tokenizer = backend(ids, specials)
    if segmentation.lowercase:
        tokenizer.normalizer = normalizers.Sequence(
            [normalizers.Lowercase(), *([tokenizer.normalizer] if tokenizer.normalizer else [])]
        )
    if append_eos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"$A {specials.eos}", special_tokens=[(specials.eos, specials.ids[specials.eos])]
        )  # JoeyNMT appends </s> to every source sentence; labels end with it too
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token=specials.unk,
        pad_token=specials.pad,
        bos_token=specials.bos,
        eos_token=specials.eos,
        padding_side="right",
        split_special_tokens=True,
    )
    return JoeyNMTTokenizer(wrapped, len(target_itos), source_ids, len(ordered) - in_vocabulary)


def _word_level(segmentation: Segmentation):
    """`level: word`: JoeyNMT splits at spaces; a word outside the vocabulary is `<unk>`."""

    def backend(ids, specials):
        tokenizer = Tokenizer(models.WordLevel(vocab=ids, unk_token=specials.unk))
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        return tokenizer  # with no decoder, decoding joins the words with spaces

    return (lambda token: token), [], backend


def _subword_nmt(segmentation: Segmentation):
    """subword-nmt (version 0.2 codes): merges are applied by rank to each word, whose last character carries the
    end-of-word mark `</w>`; pieces but a word's last are written with the separator ("hel@@ lo"). Here the same BPE
    runs in `tokenizers` with `end_of_word_suffix="</w>"`: JoeyNMT's "hel@@" is the piece "hel", its "lo" is "lo</w>"."""
    codes = segmentation.codes
    lines = codes.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].startswith("#version: 0.2"):
        raise JoeyNMTImportError(
            f"{codes}: only subword-nmt codes of version 0.2 (first line '#version: 0.2') are supported"
        )
    merges = []
    for number, line in enumerate(lines[1:], start=2):
        pair = tuple(line.split(" "))
        if len(pair) != 2:
            raise JoeyNMTImportError(f"{codes}, line {number}: a merge is two symbols separated by one space: {line!r}")
        merges.append(pair)
    merges = list(dict.fromkeys(merges))  # subword-nmt keeps a repeated merge's first rank
    symbols = list(dict.fromkeys(s for left, right in merges for s in (left, right, left + right)))
    separator = segmentation.separator

    def joey_to_piece(token: str) -> str:
        return token[: -len(separator)] if token.endswith(separator) else token + "</w>"

    def backend(ids, specials):
        model = models.BPE(vocab=ids, merges=merges, unk_token=specials.unk, end_of_word_suffix="</w>")
        tokenizer = Tokenizer(model)
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tokenizer.decoder = decoders.BPEDecoder(suffix="</w>")
        return tokenizer

    return joey_to_piece, symbols, backend


def _sentencepiece(segmentation: Segmentation):
    """A SentencePiece unigram model, read from its protobuf file and run by `tokenizers` in SentencePiece's order:
    its precompiled normalisation, extra spaces removed, spaces as "▁", the dummy prefix, then the unigram lattice."""
    model = read_sentencepiece_model(segmentation.model_file)
    if model.model_type != 1:
        kinds = {2: "bpe", 3: "word", 4: "char"}
        raise JoeyNMTImportError(
            f"{segmentation.model_file}: SentencePiece model_type {kinds.get(model.model_type, model.model_type)!r} "
            "is not supported, only 'unigram'"
        )
    if model.byte_fallback:
        raise JoeyNMTImportError(f"{segmentation.model_file}: SentencePiece byte_fallback is not supported")
    if any(kind == 4 for _, _, kind in model.pieces):
        raise JoeyNMTImportError(f"{segmentation.model_file}: SentencePiece user-defined symbols are not supported")
    scores = {piece: score for piece, score, _ in model.pieces}

    def backend(ids, specials):
        ordered = sorted(ids, key=ids.get)
        # Pieces that SentencePiece never emits from text (control symbols, JoeyNMT's own specials) get no score
        # that the lattice could prefer over spelling the text out.
        floor = min(scores.values()) - 1000.0
        normal = {piece for piece, _, kind in model.pieces if kind in (1, 2)}  # normal and unknown pieces
        vocab = [(piece, scores[piece] if piece in normal else floor) for piece in ordered]
        tokenizer = Tokenizer(models.Unigram(vocab=vocab, unk_id=ids[specials.unk], byte_fallback=False))
        steps = []
        if model.precompiled_charsmap:
            steps.append(normalizers.Precompiled(model.precompiled_charsmap))
        if model.remove_extra_whitespaces:
            steps += [normalizers.Replace(Regex(r"\A +| +\z"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
        if model.escape_whitespaces:
            steps.append(normalizers.Replace(" ", METASPACE))
        if model.add_dummy_prefix:
            steps.append(normalizers.Prepend(METASPACE))
        tokenizer.normalizer = normalizers.Sequence(steps)
        tokenizer.decoder = decoders.Sequence(
            [decoders.Replace(METASPACE, " "), decoders.Fuse(), decoders.Strip(content=" ", left=1)]
            if model.add_dummy_prefix else [decoders.Replace(METASPACE, " "), decoders.Fuse()]
        )  # fmt: skip
        return tokenizer

    return (lambda token: token), [piece for piece, _, _ in model.pieces], backend


@dataclass
class SentencePieceModel:
    pieces: list[tuple[str, float, int]]  # (piece, score, type): 1 normal, 2 unknown, 3 control, 4 user-defined, ...
    model_type: int  # 1 unigram, 2 bpe, 3 word, 4 char
    byte_fallback: bool
    precompiled_charsmap: bytes
    add_dummy_prefix: bool
    remove_extra_whitespaces: bool
    escape_whitespaces: bool


def read_sentencepiece_model(path: Path) -> SentencePieceModel:
    """The fields of a SentencePiece `ModelProto` (sentencepiece_model.proto) that segmentation depends on, read from
    the protobuf wire format directly, so that neither sentencepiece nor protobuf needs to be installed."""
    if not path.is_file():
        raise JoeyNMTImportError(f"SentencePiece model {path} not found")
    try:
        top = _fields(path.read_bytes())
        pieces = []
        for raw in top.get(1, []):
            piece = _fields(raw)
            score = struct.unpack("<f", piece[2][0])[0] if 2 in piece else 0.0
            pieces.append((piece[1][0].decode("utf-8"), score, piece.get(3, [1])[0]))
        trainer = _fields(top[2][0]) if 2 in top else {}
        normalizer = _fields(top[3][0]) if 3 in top else {}
    except (KeyError, IndexError, ValueError, struct.error) as error:
        raise JoeyNMTImportError(f"{path} is not a SentencePiece model file ({error})") from error
    return SentencePieceModel(
        pieces=pieces,
        model_type=trainer.get(3, [1])[0],
        byte_fallback=bool(trainer.get(35, [0])[0]),
        precompiled_charsmap=normalizer.get(2, [b""])[0],
        add_dummy_prefix=bool(normalizer.get(3, [1])[0]),
        remove_extra_whitespaces=bool(normalizer.get(4, [1])[0]),
        escape_whitespaces=bool(normalizer.get(5, [1])[0]),
    )


def _fields(data: bytes) -> dict[int, list]:
    """Protobuf wire format: field number -> values (ints for varints, bytes otherwise), in order."""
    fields, position = {}, 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = _varint(data, position)
        elif wire_type == 1:
            value, position = data[position : position + 8], position + 8
        elif wire_type == 2:
            length, position = _varint(data, position)
            value, position = data[position : position + length], position + length
        elif wire_type == 5:
            value, position = data[position : position + 4], position + 4
        else:
            raise ValueError(f"unexpected protobuf wire type {wire_type}")
        fields.setdefault(number, []).append(value)
    return fields


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
