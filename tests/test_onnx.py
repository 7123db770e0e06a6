"""The ONNX export and the onnxruntime translator: the graphs compute what the model computes, the translator's
search returns generate()'s tokens, and the exported folder runs where torch cannot be imported."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from hf_rnn_seq2seq.onnx import export_onnx, main
from hf_rnn_seq2seq.onnx.translator import CONFIG_FILE, OnnxTranslator
from hf_rnn_seq2seq.translation import translate
from helpers import BOS, EOS, PAD, VARIANTS, VOCAB, call_script, padded_batch, tiny_model, variant_name
from test_compat_matrix import MODELS

MAX_NEW_TOKENS = 8
# Every variant of the model tests but layer normalisation (refused below), JoeyNMT's recurrent model as its importer
# writes it, and a one-layer model with a unidirectional encoder and its own attention and encoder widths.
SHAPES = {variant_name(*variant): (variant, {}) for variant in VARIANTS if variant[0] != "cgru_layer_norm"} | {
    "joeynmt_lstm": (("luong_concat", True, "lstm"), {
        key: value for key, value in MODELS["joeynmt_lstm"][1].items()
        if key not in ("attention_type", "input_feeding", "rnn_type")
    }),
    "unidirectional": (("bahdanau", False, "gru"), dict(
        bidirectional_encoder=False, num_encoder_layers=1, num_decoder_layers=1, encoder_hidden_size=20,
        attention_hidden_size=6,
    )),
}  # fmt: skip


def word_tokenizer(size: int) -> PreTrainedTokenizerFast:
    """Words "w3" ... as token ids 3 ...: a tokenizer for the tiny models, whose vocabularies are ids only."""
    vocabulary = {"<pad>": PAD, "<s>": BOS, "</s>": EOS} | {f"w{i}": i for i in range(3, size)}
    backend = Tokenizer(models.WordLevel(vocabulary, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", EOS)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<pad>"
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """shape name -> (model, exported folder)."""
    made = {}
    for name, ((attention_type, input_feeding, rnn_type), overrides) in SHAPES.items():
        model = tiny_model(attention_type, input_feeding, seed=2, rnn_type=rnn_type, **overrides)
        folder = tmp_path_factory.mktemp(name)
        model.save_pretrained(folder / "model")
        word_tokenizer(model.config.source_vocab_size or VOCAB).save_pretrained(folder / "model")
        made[name] = model, OnnxTranslator(export_onnx(folder / "model", folder / "onnx"))
    return made


def source_batch(model):
    ids, mask = padded_batch(seed=3)
    if model.config.source_vocab_size:  # ids the target vocabulary lacks, to be sure the encoder reads its own table
        ids = torch.where(mask.bool() & (ids % 3 == 0), ids + 5, ids)
    return ids, mask


@pytest.mark.parametrize("name", SHAPES)
def test_the_graphs_compute_what_the_model_computes(exported, name):
    """The encoder's outputs, and each step's log-probabilities along generated sentences fed back one token at a
    time (with 1 and 3 decoder rows a sentence), equal the model's teacher-forced forward pass."""
    model, translator = exported[name]
    ids, mask = source_batch(model)
    encoded = dict(zip(translator.config["encoder_outputs"], translator.encoder.run(None, {
        "input_ids": ids.numpy(), "attention_mask": mask.numpy()})))  # fmt: skip
    with torch.no_grad():
        encoder_states = model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        np.testing.assert_allclose(encoded["encoder_states"], encoder_states.numpy(), atol=1e-4)
        targets = model.generate(ids, attention_mask=mask, max_new_tokens=MAX_NEW_TOKENS, num_beams=1)
        expected = model(input_ids=ids, attention_mask=mask, decoder_input_ids=targets).logits.log_softmax(-1)
    for rows_per_sentence in (1, 3):
        rows = np.repeat(targets.numpy(), rows_per_sentence, axis=0)
        hidden = np.repeat(encoded["hidden"], rows_per_sentence, axis=1)
        state = {"hidden": hidden}
        if "attentional" in translator.config["decoder_inputs"]:
            state["attentional"] = np.zeros((len(rows), 1, model.config.attentional_size), dtype=np.float32)
        no_rules = np.zeros(model.config.vocab_size, dtype=np.float32)
        wanted = ["log_probs", *(f"next_{key}" for key in state)]
        for step in range(targets.shape[1]):
            outputs = translator.step(rows[:, step], state, encoded, mask.numpy(), no_rules, 1, wanted)
            state = {key: outputs[f"next_{key}"] for key in state}
            np.testing.assert_allclose(
                outputs["log_probs"], np.repeat(expected[:, step].numpy(), rows_per_sentence, axis=0), atol=1e-4
            )


@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize("num_beams", [1, 4])
def test_the_translator_returns_generate_s_tokens(exported, name, num_beams):
    model, translator = exported[name]
    ids, mask = source_batch(model)
    ours = translator.generate(ids.numpy(), mask.numpy(), num_beams=num_beams, max_new_tokens=MAX_NEW_TOKENS)
    theirs = model.generate(ids, attention_mask=mask, num_beams=num_beams, max_new_tokens=MAX_NEW_TOKENS)
    assert ours["sequences"].tolist() == theirs.tolist()


@pytest.mark.parametrize(
    "settings",
    [
        dict(num_beams=4, num_return_sequences=3),
        dict(num_beams=3, length_penalty=0.5),
        dict(num_beams=3, length_penalty=2.0, early_stopping=True),
        dict(num_beams=3, length_penalty=2.0, early_stopping="never"),
        dict(num_beams=5, max_new_tokens=3),
    ],
    ids=str,
)
def test_the_beam_search_follows_generate_s_settings(exported, settings):
    settings = {"max_new_tokens": MAX_NEW_TOKENS} | settings
    for name in ("bahdanau-feeding-gru", "luong_general-plain-lstm"):
        model, translator = exported[name]
        ids, mask = source_batch(model)
        ours = translator.generate(ids.numpy(), mask.numpy(), **settings)["sequences"]
        assert ours.tolist() == model.generate(ids, attention_mask=mask, **settings).tolist(), name


@pytest.mark.parametrize("num_beams", [1, 4])
def test_the_attention_returned_is_the_chosen_hypothesis_s(exported, num_beams):
    """As the model computes it for the returned tokens, teacher-forced (rows cut at their first EOS)."""
    model, translator = exported["bahdanau-feeding-gru"]
    ids, mask = source_batch(model)
    ours = translator.generate(ids.numpy(), mask.numpy(), num_beams=num_beams, max_new_tokens=MAX_NEW_TOKENS)
    sequences = torch.from_numpy(ours["sequences"])
    with torch.no_grad():
        outputs = model(input_ids=ids, attention_mask=mask, decoder_input_ids=sequences[:, :-1], output_attentions=True)
    expected = outputs.cross_attentions[0][:, 0].numpy()  # (B, T - 1, S)
    for row, tokens in enumerate(ours["sequences"].tolist()):
        length = tokens[1:].index(EOS) + 1 if EOS in tokens[1:] else len(tokens) - 1
        np.testing.assert_allclose(ours["attention"][row, :length], expected[row, :length], atol=1e-4)


def test_the_exported_folder_translates_as_the_model_without_torch(model_folder, tmp_path):
    """A process where torch and transformers cannot be imported runs the folder's own onnx_translator.py; its
    translations (real BPE tokenizer, greedy and beam 5) equal the translate command's."""
    folder, model, tokenizer = model_folder
    onnx_folder = export_onnx(folder, tmp_path / "onnx")
    sentences = ["Ein Mann fährt Fahrrad.", "", "Zwei Hunde spielen im Schnee.", "Eine Frau liest."]
    script = f"""
import json, sys
sys.modules["torch"] = sys.modules["transformers"] = None  # importing either now fails
sys.path.insert(0, {str(onnx_folder)!r})
from onnx_translator import OnnxTranslator
translator = OnnxTranslator({str(onnx_folder)!r})
print(json.dumps([translator.translate({sentences!r}, num_beams=beams) for beams in (1, 5)]))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ours = json.loads(result.stdout.splitlines()[-1])
    assert ours == [translate(model, tokenizer, sentences, num_beams=beams) for beams in (1, 5)]
    assert ours[0][1] == ""  # an empty line translates to an empty one


def test_the_translator_normalises_text_as_the_training_data_is():
    from hf_rnn_seq2seq.onnx import translator
    from hf_rnn_seq2seq.text_files import normalize

    for text in (" Va\u202f!\t", "Cafe\u0301\u00a0noir ", "a\r\nb", "\u3000x\u2009y\u200a"):
        assert translator.normalize(text) == normalize(text), repr(text)


def test_an_over_long_sentence_is_cut_as_the_translate_command_cuts_it(model_folder, tmp_path, caplog):
    folder, model, tokenizer = model_folder
    translator = OnnxTranslator(export_onnx(folder, tmp_path / "onnx"))
    translator.config["max_source_length"] = 6
    sentence = "Ein Mann mit einem orangefarbenen Hut starrt auf etwas."
    with caplog.at_level("WARNING"):
        ours = translator.translate([sentence], num_beams=1)
    assert "1 of 1 sentences are longer than max_source_length=6 tokens" in caplog.text
    assert ours == translate(model, tokenizer, [sentence], num_beams=1, max_source_length=6)


def test_a_folder_that_is_not_an_exported_model_is_refused(model_folder, tmp_path):
    with pytest.raises(ValueError, match=f"is not an exported model: it has no {CONFIG_FILE}"):
        OnnxTranslator(model_folder[0])


def test_a_graph_whose_opset_onnxruntime_lacks_is_refused_naming_it(model_folder, tmp_path):
    onnx_folder = export_onnx(model_folder[0], tmp_path / "onnx")
    graph = onnx.load(onnx_folder / "decoder_step.onnx")
    graph.opset_import[0].version = 99
    onnx.save(graph, onnx_folder / "decoder_step.onnx")
    with pytest.raises(ValueError, match=r"onnxruntime [\d.]+ cannot load .*decoder_step.onnx"):
        OnnxTranslator(onnx_folder)


def test_settings_the_translator_does_not_know_are_refused(exported):
    _, translator = exported["luong_general-plain-gru"]
    with pytest.raises(TypeError, match=r"unknown decoding settings \['do_sample'\]"):
        translator.translate(["w3 w4"], do_sample=True)
    with pytest.raises(ValueError, match="num_return_sequences must be between 1 and num_beams=2"):
        translator.translate(["w3 w4"], num_beams=2, num_return_sequences=3)


def test_a_model_whose_decoding_the_translator_would_not_follow_is_refused(model_folder, tmp_path):
    folder, model, tokenizer = model_folder
    changed = tmp_path / "model"
    model.generation_config.repetition_penalty = 1.3
    try:
        model.save_pretrained(changed)
    finally:
        model.generation_config.repetition_penalty = 1.0
    tokenizer.save_pretrained(changed)
    with pytest.raises(ValueError, match=r"sets repetition_penalty=1.3, which the onnxruntime translator does not"):
        export_onnx(changed, tmp_path / "onnx")


def test_int8_quantises_the_matrix_products(model_folder, tmp_path, monkeypatch, capsys):
    folder, model, tokenizer = model_folder
    status, out, err = call_script(main, folder, tmp_path / "int8", "--int8", monkeypatch=monkeypatch, capsys=capsys)
    assert status == 0, err
    operators = {node.op_type for node in onnx.load(tmp_path / "int8" / "decoder_step.onnx").graph.node}
    assert "MatMulInteger" in operators or "DynamicQuantizeMatMul" in operators, operators
    translator = OnnxTranslator(tmp_path / "int8")
    assert translator.config["int8"] is True
    translations = translator.translate(["Ein Mann fährt Fahrrad.", "Eine Frau liest."], num_beams=5)
    assert len(translations) == 2 and all(isinstance(text, str) for text in translations)


def test_a_model_starting_from_the_encoders_final_states_is_refused_naming_it(tmp_path):
    folder = tmp_path / "model"
    tiny_model(seed=0, **MODELS["opennmt_gru_mlp"][1]).save_pretrained(folder)
    word_tokenizer(VOCAB).save_pretrained(folder)
    with pytest.raises(ValueError, match=r"decoder_init='encoder_final' .* not covered by the ONNX export"):
        export_onnx(folder, tmp_path / "onnx")


def test_a_model_with_layer_normalisation_is_refused_naming_it(tmp_path):
    folder = tmp_path / "model"
    tiny_model("cgru_layer_norm").save_pretrained(folder)
    word_tokenizer(VOCAB).save_pretrained(folder)
    with pytest.raises(ValueError, match=r"layer_norm=True, .* not covered by the ONNX export"):
        export_onnx(folder, tmp_path / "onnx")
