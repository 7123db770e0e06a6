"""The files saved beside the weights compute the same under every transformers release of compat-matrix.toml.

A folder saved by this environment is loaded as remote code (package blocked, offline, empty HF_HOME) under each
release, installed in its own folder beside this environment's torch; logits (of the head and the base model),
greedy and beam-4 ids and the cross-attentions generate returns must equal this environment's. A folder saved again
under the oldest release must do the same under every release (models saved by older installs keep working).
"""

import os
import tempfile
from pathlib import Path

import pytest
import torch
import transformers

from hf_rnn_seq2seq import RNNSeq2SeqForConditionalGeneration, RNNSeq2SeqModel
from helpers import BOS, EOS, VOCAB, compat_releases, run_remote_code_worker, padded_batch, tiny_model, transformers_folder
from remote_code_worker import outputs_of

# .ci/newest-releases runs this file with the newest published releases first on the path, in the folder it names
# here: the matrix gains a row for them (the worker gets the same folder, torch included).
NEWEST_RELEASES = os.environ.get("HF_RNN_SEQ2SEQ_NEWEST_RELEASES")
RELEASES = compat_releases() + (
    [{"transformers": transformers.__version__, "folder": NEWEST_RELEASES}] if NEWEST_RELEASES else []
)
# name: (seed, settings); each seed makes some rows of the batch end early and others run to the limit.
# Bahdanau attention with input feeding (step by step, attention before the GRU step) and Luong (one GRU call).
MODELS = {
    "bahdanau_feeding": (1, dict(attention_type="bahdanau", input_feeding=True)),
    "luong_general": (1, dict(attention_type="luong_general")),
    # JoeyNMT's recurrent model as the importer writes it: separate source vocabulary, a hidden-size attentional
    # vector with its own output layer, one bridge state for both LSTM layers (h and c), no query bias.
    "joeynmt_lstm": (2, dict(
        attention_type="luong_concat", input_feeding=True, rnn_type="lstm", source_vocab_size=VOCAB + 5,
        attentional_size=16, tie_word_embeddings=False, attention_query_bias=False, shared_bridge=True,
    )),
    # OpenNMT-py's models as the importer writes them: decoder layers that start from the encoder layers' final
    # states (through its ReLU bridge, or as they are), an output layer with a bias, `mlp` attention without tanh.
    "opennmt_lstm_bridge": (8, dict(
        input_feeding=True, rnn_type="lstm", source_vocab_size=VOCAB + 5, encoder_hidden_size=8, attentional_size=16,
        tie_word_embeddings=False, decoder_init="encoder_final_relu", output_bias=True,
    )),
    "opennmt_gru_mlp": (8, dict(
        attention_type="luong_concat", encoder_hidden_size=8, attentional_size=16, tie_word_embeddings=False,
        decoder_init="encoder_final", attentional_activation="none", output_bias=True,
    )),
    # eole's default RNN as the importer writes it: a unidirectional encoder, the sinusoidal position encoding on
    # both sides' embeddings (target positions counted on from the decoder state), here with its bridge.
    "eole_lstm_positions": (2, dict(
        input_feeding=True, rnn_type="lstm", bidirectional_encoder=False, attentional_size=16,
        tie_word_embeddings=False, decoder_init="encoder_final_relu", position_encoding="sinusoidal",
    )),
    # Marian's s2s as the importer writes it: the conditional GRU, the deep output, one start state from the mean of
    # the encoder states for both decoder layers, a zero vector as the first decoder input, each encoder direction a
    # stack of its own, separate vocabularies, an output layer with a bias.
    "marian_cgru": (8, dict(
        attention_type="bahdanau", decoder_type="cgru", deep_output=True, decoder_init="mean_bridge",
        shared_bridge=True, zero_start_embedding=True, encoder_stacking="per_direction", source_vocab_size=VOCAB + 5,
        tie_word_embeddings=False, output_bias=True,
    )),
    # The same with Marian's layer normalisation (its cells, scorer, bridge and deep output).
    "marian_cgru_layer_norm": (8, dict(
        attention_type="bahdanau", decoder_type="cgru", deep_output=True, decoder_init="mean_bridge",
        shared_bridge=True, zero_start_embedding=True, encoder_stacking="per_direction", source_vocab_size=VOCAB + 5,
        tie_word_embeddings=False, output_bias=True, layer_norm=True, attention_query_bias=False,
    )),
}


def run_worker(release, inputs, folders, root, save_to=None) -> dict[str, torch.Tensor]:
    workdir = Path(tempfile.mkdtemp(prefix=f"transformers-{release['transformers']}-", dir=root))
    folder = Path(release["folder"]) if "folder" in release else transformers_folder(release)
    metadata, results = run_remote_code_worker(inputs, folders, workdir, pythonpath=folder, save_to=save_to)
    assert metadata == {"transformers": release["transformers"], "hf_rnn_seq2seq_loaded": "False"}, metadata
    return results


def after_eos(ids: torch.Tensor) -> torch.Tensor:
    """True at the positions after each row's first EOS: (rows, length) -> (rows, length)."""
    eos = (ids == EOS).int()
    return eos.cumsum(1) - eos > 0


def until_eos(ids: torch.Tensor) -> torch.Tensor:
    return ids.masked_fill(after_eos(ids), -1)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Folders saved by this environment, the padded batch, and what the package computes for them in-process."""
    root = tmp_path_factory.mktemp("compat")
    ids, mask = padded_batch(lengths=(7, 4, 1, 6, 3))
    decoder_ids = torch.cat([torch.full((ids.shape[0], 1), BOS), ids[:, :5].clamp(min=3)], dim=1)
    inputs = {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": decoder_ids}
    folders = []
    for name, (seed, settings) in MODELS.items():
        model = tiny_model(seed=seed, **settings)
        with torch.no_grad():
            model.lm_head.weight[EOS] *= 2  # so that some rows end early (with this seed, in every search)
            if model.lm_head.bias is not None:
                model.lm_head.bias.normal_(std=0.05, generator=torch.Generator().manual_seed(seed))
        model.save_pretrained(root / name)
        folders.append(root / name)
    expected = {}
    for folder in folders:
        model = RNNSeq2SeqForConditionalGeneration.from_pretrained(folder).eval()
        outputs = outputs_of(model, RNNSeq2SeqModel.from_pretrained(folder).eval(), inputs)
        expected.update({f"{folder.name}.{name}": value for name, value in outputs.items()})
        # The batch must exercise decoding: rows that end early and rows that run to the limit.
        for kind in ("greedy", "beam"):
            ended = (outputs[kind] == EOS).any(dim=1)
            assert ended.any() and not ended.all(), (folder.name, kind, outputs[kind])
    # Saved again under the oldest release, for the second half of the matrix.
    resaved = root / "saved-by-oldest"
    run_worker(RELEASES[0], inputs, folders, root, save_to=resaved)
    return {"root": root, "inputs": inputs, "folders": folders + [resaved / folder.name for folder in folders],
            "expected": expected}


@pytest.mark.parametrize(
    "release", RELEASES, ids=[("newest-" if "folder" in release else "") + release["transformers"] for release in RELEASES]
)
def test_remote_code_computes_the_same_under(release, saved):
    results = run_worker(release, saved["inputs"], saved["folders"], saved["root"])
    for folder in saved["folders"]:
        origin = "saved by this environment" if folder.parent == saved["root"] else "saved under the oldest release"
        for key, expected in saved["expected"].items():
            model, quantity = key.split(".")
            if model != folder.name:
                continue
            got = results[f"{folder.parent.name}/{folder.name}.{quantity}"]
            where = f"{folder.name} ({origin}), {quantity}, transformers {release['transformers']}"
            if quantity in ("greedy", "beam"):
                # Releases fill a row after its EOS differently (4.x with pad, 5.x beam search with EOS).
                assert torch.equal(until_eos(got), until_eos(expected)), f"{where}:\n{got}\n!=\n{expected}"
            elif quantity.endswith("_attentions"):
                # A finished sentence's rows are fed that filler (or, in beam search, dropped from the search at a
                # step that differs between releases), so its attention counts until its returned sequence's EOS.
                sequences = saved["expected"][f"{folder.name}.{quantity.removesuffix('_attentions')}"]
                rows = expected.shape[1] // sequences.shape[0]
                live = ~after_eos(sequences)[:, 1:].repeat_interleave(rows, dim=0).T  # (steps, rows)
                torch.testing.assert_close(got[live], expected[live], atol=1e-5, rtol=0, msg=where)
            else:
                torch.testing.assert_close(got, expected, atol=1e-5, rtol=0, msg=where)

