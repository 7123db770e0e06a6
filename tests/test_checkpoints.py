"""Saving and loading: remote-code round trips are bit-identical, incomplete checkpoints are refused."""

import ast
import json
import os
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoModelForSeq2SeqLM

from hf_rnn_seq2seq import RNNSeq2SeqForConditionalGeneration, RNNSeq2SeqModel
from hf_rnn_seq2seq.checkpoints import check_checkpoint_weights
from helpers import VARIANTS, padded_batch, run_remote_code_worker, tiny_config, tiny_model, variant_name
from remote_code_worker import outputs_of


@pytest.fixture(scope="module")
def remote_code_outputs(tmp_path_factory):
    """Every variant saved, then loaded as remote code in one fresh process elsewhere (package blocked, offline, its
    own HF_HOME), with what each computed: (folder of saved variants, inputs, outputs)."""
    root = tmp_path_factory.mktemp("remote")
    ids, mask = padded_batch(seed=20)
    inputs = {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": ids[:, :5].clone()}
    folders = []
    for variant in VARIANTS:
        attention_type, input_feeding, rnn_type = variant
        folders.append(root / "saved" / variant_name(*variant))
        tiny_model(attention_type, input_feeding, rnn_type=rnn_type).save_pretrained(folders[-1])
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    _, outputs = run_remote_code_worker(inputs, folders, elsewhere)
    return root / "saved", inputs, outputs


@pytest.mark.parametrize("attention_type,input_feeding,rnn_type", VARIANTS)
def test_fresh_process_remote_code_load_is_bit_identical(attention_type, input_feeding, rnn_type, remote_code_outputs):
    saved, inputs, remote = remote_code_outputs
    name = variant_name(attention_type, input_feeding, rnn_type)
    folder = saved / name
    local = outputs_of(
        RNNSeq2SeqForConditionalGeneration.from_pretrained(folder).eval(), RNNSeq2SeqModel.from_pretrained(folder).eval(),
        inputs,
    )  # fmt: skip
    for quantity, value in local.items():
        got = remote[f"saved/{name}.{quantity}"]
        assert torch.equal(got, value), (quantity, (got.double() - value.double()).abs().max())
    model = tiny_model(attention_type, input_feeding, rnn_type=rnn_type)  # the very model that was saved
    before_saving = outputs_of(model, model.model, inputs)
    for quantity, value in local.items():
        assert torch.equal(before_saving[quantity], value), quantity


def test_saved_folder_holds_exactly_the_hub_files(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == [
        "config.json",
        "configuration_rnn_seq2seq.py",
        "generation_config.json",
        "model.safetensors",
        "modeling_rnn_seq2seq.py",
    ]
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_rnn_seq2seq.RNNSeq2SeqConfig",
        "AutoModel": "modeling_rnn_seq2seq.RNNSeq2SeqModel",
        "AutoModelForSeq2SeqLM": "modeling_rnn_seq2seq.RNNSeq2SeqForConditionalGeneration",
    }


PIPELINE_CODE = Path(__file__).resolve().parents[1] / "hf_rnn_seq2seq" / "pipeline_rnn_seq2seq.py"
# What training or data code would bring along: corpus names, data files, paths, file and process access.
NOT_MODEL_CODE = re.compile(r"(?i)multi30k|tatoeba|\.gz\b|\.tsv\b|\.\./|/shared/|\bopen\(|\bos\.|subprocess|Trainer")


@pytest.mark.parametrize("name", ["configuration_rnn_seq2seq.py", "modeling_rnn_seq2seq.py", "pipeline"])
def test_code_files_that_travel_with_weights_hold_model_code_only(name, tmp_path):
    """The files written for trust_remote_code (and the pipeline file a pipeline push adds): no data paths, no
    training code, no file or process access."""
    tiny_model().save_pretrained(tmp_path)
    text = PIPELINE_CODE.read_text() if name == "pipeline" else (tmp_path / name).read_text()
    assert not NOT_MODEL_CODE.findall(text), (name, NOT_MODEL_CODE.findall(text))


def test_model_code_files_import_only_torch_transformers_and_each_other(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    for name in ("configuration_rnn_seq2seq.py", "modeling_rnn_seq2seq.py", PIPELINE_CODE):
        tree = ast.parse((tmp_path / name).read_text())
        modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        modules |= {
            "." * node.level + (node.module or "") for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        }
        roots = {module.split(".")[0] for module in modules if not module.startswith(".")}
        relative = {module for module in modules if module.startswith(".")}
        assert roots <= {"torch", "transformers"}, (name, modules)
        assert relative <= {".configuration_rnn_seq2seq"}, (name, modules)


def rewrite_weights(folder, change):
    path = folder / "model.safetensors"
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def test_checkpoint_missing_a_tensor_is_refused_naming_it(tmp_path):
    tiny_model("bahdanau").save_pretrained(tmp_path)
    rewrite_weights(tmp_path, lambda t: t.pop("model.decoder.attention.energy.weight"))
    with pytest.raises(ValueError, match=r"does not fit.*missing: model\.decoder\.attention\.energy\.weight"):
        RNNSeq2SeqForConditionalGeneration.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="missing: model.decoder.attention.energy.weight"):
        AutoModelForSeq2SeqLM.from_pretrained(tmp_path)


def test_checkpoint_with_a_tensor_of_the_wrong_shape_is_refused_naming_it(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    rewrite_weights(tmp_path, lambda t: t.update({"model.decoder.bridge.bias": torch.zeros(3)}))
    with pytest.raises(ValueError, match=r"wrong shape: model\.decoder\.bridge\.bias \(3,\) != \(32,\)"):
        RNNSeq2SeqForConditionalGeneration.from_pretrained(tmp_path)


def test_truncated_safetensors_is_refused(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(Exception, match="(?i)incomplete metadata|deserializ"):
        RNNSeq2SeqForConditionalGeneration.from_pretrained(tmp_path)


def test_resume_check_accepts_the_checkpoint_of_its_model(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    check_checkpoint_weights(tmp_path, model)  # the tied output layer is not saved and not missing


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda t: t.pop("model.decoder.bridge.bias"), r"refusing to resume: missing: model\.decoder\.bridge\.bias"),
        (
            lambda t: t.update({"model.decoder.bridge.bias": torch.zeros(3)}),
            r"refusing to resume: wrong shape: model\.decoder\.bridge\.bias \(3,\) != \(32,\)",
        ),
    ],
    ids=["missing tensor", "wrong shape"],
)
def test_resume_refuses_weights_that_do_not_fit_the_model(damage, message, tmp_path):
    """The Trainer loads a resumed checkpoint with strict=False: without this check a missing tensor stays random."""
    model = tiny_model()
    model.save_pretrained(tmp_path)
    rewrite_weights(tmp_path, damage)
    with pytest.raises(ValueError, match=message):
        check_checkpoint_weights(tmp_path, model)


def test_resume_refuses_truncated_weights(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="model.safetensors cannot be read .*truncated or corrupt"):
        check_checkpoint_weights(tmp_path, model)


@pytest.mark.parametrize("damage", ["pickle only", "truncated"])
def test_the_best_model_reload_refuses_a_pickle_only_or_damaged_checkpoint(damage, tmp_path):
    """At the end of training the Trainer reloads the best checkpoint; it would unpickle pytorch_model.bin, or keep
    random values for what it cannot read. train.py's trainer checks the checkpoint first."""
    from transformers import Seq2SeqTrainingArguments

    from hf_rnn_seq2seq.trainer import TranslationTrainer

    model = tiny_model()
    best = tmp_path / "checkpoint-2"
    model.save_pretrained(best)
    weights = best / "model.safetensors"
    if damage == "pickle only":
        torch.save(model.state_dict(), best / "pytorch_model.bin")
        weights.unlink()
        message = "has no model.safetensors: weights are read from safetensors only"
    else:
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        message = "cannot be read .*truncated or corrupt"
    arguments = Seq2SeqTrainingArguments(str(tmp_path / "run"), report_to="none", use_cpu=True)
    trainer = TranslationTrainer(model=model, args=arguments)
    trainer.state.best_model_checkpoint = str(best)
    with pytest.raises(ValueError, match=message):
        trainer._load_best_model()


def test_base_model_checkpoint_loads_into_the_head_class_like_the_library(tmp_path, caplog):
    torch.manual_seed(0)
    base = RNNSeq2SeqModel(tiny_config(tie_word_embeddings=False)).eval()
    base.save_pretrained(tmp_path)
    model, info = RNNSeq2SeqForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == {"lm_head.weight"}
    torch.testing.assert_close(model.model.encoder.embed_tokens.weight, base.encoder.embed_tokens.weight)
    ids, mask = padded_batch(seed=21)
    with torch.no_grad():
        expected = base(input_ids=ids, attention_mask=mask, decoder_input_ids=ids).last_hidden_state
        torch.testing.assert_close(
            model.model(input_ids=ids, attention_mask=mask, decoder_input_ids=ids).last_hidden_state, expected
        )


def test_head_checkpoint_loads_into_the_base_model(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    base = AutoModel.from_pretrained(tmp_path)
    assert isinstance(base, RNNSeq2SeqModel)


def test_weights_are_saved_as_safetensors_only(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    assert not [name for name in os.listdir(tmp_path) if name.endswith((".bin", ".pt", ".pth", ".ckpt"))]


class _WritesMarkerWhenUnpickled:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_weights_are_never_unpickled(tmp_path):
    import pickle

    marker = tmp_path / "unpickled"
    tiny_model().save_pretrained(tmp_path / "both")
    (tmp_path / "only_pickle").mkdir()
    for folder in ("both", "only_pickle"):
        with open(tmp_path / folder / "pytorch_model.bin", "wb") as handle:
            pickle.dump(_WritesMarkerWhenUnpickled(marker), handle)
    (tmp_path / "only_pickle" / "config.json").write_text((tmp_path / "both" / "config.json").read_text())

    RNNSeq2SeqForConditionalGeneration.from_pretrained(tmp_path / "both")  # the safetensors file is used
    with pytest.raises(OSError, match="safetensors|model.safetensors"):
        RNNSeq2SeqForConditionalGeneration.from_pretrained(tmp_path / "only_pickle")
    with pytest.raises(ValueError, match="safetensors only"):
        RNNSeq2SeqForConditionalGeneration.from_pretrained(tmp_path / "both", use_safetensors=False)
    assert not marker.exists()
