"""Sharing on the Hub, end to end against a local Hub stand-in (tests/hub_server.py) with the real client.

Every Hub client runs in a subprocess, because huggingface_hub reads HF_ENDPOINT when it is imported (this process
is offline, see conftest.py). The reloading process cannot import this package at all, as on a machine that never
installed it, and starts from an empty HF_HOME, so everything it uses comes from the server.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file, save_file

from transformers import AutoTokenizer

from hf_rnn_seq2seq import RNNSeq2SeqForConditionalGeneration
from hf_rnn_seq2seq.translation import translate
from helpers import TOKEN, TRAIN_PY, hub_env, in_fresh_process, run
from hub_server import HubServer

USER = "alice"
MODEL_FILES = {"config.json", "configuration_rnn_seq2seq.py", "modeling_rnn_seq2seq.py", "model.safetensors",
               "generation_config.json"}  # fmt: skip
TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json"}

@pytest.fixture(scope="module")
def hub():
    with HubServer(token=TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def trained(hub, tiny_run, tmp_path_factory):
    """The session's tiny run published by `train.py --push_to_hub`: resumed from its last checkpoint (nothing left
    to train), it evaluates, tests, writes the model card and uploads the folder: the local folder and the repository.
    """
    tmp_path = tmp_path_factory.mktemp("trained")
    out, repo_id = tmp_path / "multi30k-tiny", f"{USER}/multi30k-tiny"
    shutil.copytree(tiny_run.folder, out)
    run(
        [sys.executable, str(TRAIN_PY), *tiny_run.args, "--output_dir", str(out), "--resume_from_checkpoint", "last",
         "--push_to_hub", "--hub_model_id", repo_id, "--hub_token", TOKEN],
        env=hub_env(hub, tmp_path, "train"),
        cwd=tmp_path,
    )  # fmt: skip
    return out, repo_id, tiny_run.data_dir


def test_train_py_push_to_hub_uploads_a_complete_repository_with_the_model_card(hub, trained):
    out, repo_id, _ = trained
    files = hub.files(repo_id)
    assert MODEL_FILES | TOKENIZER_FILES | {"README.md", "test_results.json"} <= set(files)
    for name in MODEL_FILES | TOKENIZER_FILES | {"README.md"}:
        assert files[name] == (out / name).read_bytes(), name  # what the run wrote is what the Hub holds
    config = json.loads(files["config.json"])
    assert config["auto_map"]["AutoModelForSeq2SeqLM"] == "modeling_rnn_seq2seq.RNNSeq2SeqForConditionalGeneration"

    card = ModelCard(files["README.md"].decode())
    test = json.loads((out / "test_results.json").read_text())
    scores = {(r.metric_type, r.dataset_split): r for r in card.data.eval_results}
    assert scores[("bleu", "test")].metric_value == round(test["bleu"], 2)
    assert scores[("bleu", "test")].metric_config == test["bleu_signature"]
    assert scores[("chrf", "test")].metric_value == round(test["chrf"], 2)
    validation = json.loads((out / "eval_results.json").read_text())
    assert scores[("bleu", "validation")].metric_value == round(validation["eval_bleu"], 2)
    assert scores[("chrf", "validation")].metric_value == round(validation["eval_chrf"], 2)
    assert card.data.language == ["de", "en"] and card.data.license == "apache-2.0"
    # One upload, at the end: no Trainer "Model save" commit with its generic card, no pickles, no checkpoints.
    assert [commit.message for commit in hub.commits(repo_id)[1:]] == ["End of training"]
    assert (out / "training_args.bin").is_file() and list(out.glob("checkpoint-*/optimizer.pt"))  # written locally
    assert not [name for name in files if name.endswith((".bin", ".pt", ".pth")) or "checkpoint" in name]
    assert f'AutoModelForSeq2SeqLM.from_pretrained("{repo_id}", trust_remote_code=True)' in card.text


@pytest.fixture(scope="module")
def pushed(hub, trained, tmp_path_factory):
    """model.push_to_hub + tokenizer.push_to_hub + the model card to one repository, the pipeline to another."""
    folder, _, _ = trained
    tmp_path = tmp_path_factory.mktemp("push")
    repo_id, pipeline_repo_id = f"{USER}/pushed", f"{USER}/pushed-pipeline"
    in_fresh_process("push", folder, repo_id, pipeline_repo_id, env=hub_env(hub, tmp_path, "push", TOKEN), cwd=tmp_path)
    return repo_id, pipeline_repo_id


@pytest.fixture(scope="module")
def sentences(trained):
    _, _, data_dir = trained
    return [line.strip() for line in (data_dir / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()][:8]


def test_push_to_hub_uploads_a_complete_repository(hub, trained, pushed):
    folder, _, _ = trained
    repo_id, pipeline_repo_id = pushed
    # One commit per push: model.push_to_hub, tokenizer.push_to_hub, then the model card.
    _, model_commit, tokenizer_commit, card_commit = hub.commits(repo_id)
    assert set(model_commit.added) == MODEL_FILES | {"README.md"}
    assert set(tokenizer_commit.added) == TOKENIZER_FILES | {"README.md"}
    assert card_commit.added == ["README.md"]
    files = hub.files(repo_id)
    assert set(files) == MODEL_FILES | TOKENIZER_FILES | {"README.md", ".gitattributes"}
    assert json.loads(files["config.json"])["auto_map"] == {
        "AutoConfig": "configuration_rnn_seq2seq.RNNSeq2SeqConfig",
        "AutoModel": "modeling_rnn_seq2seq.RNNSeq2SeqModel",
        "AutoModelForSeq2SeqLM": "modeling_rnn_seq2seq.RNNSeq2SeqForConditionalGeneration",
    }
    card, local_card = ModelCard(files["README.md"].decode()), ModelCard.load(folder / "README.md")
    assert card.data.to_dict() == local_card.data.to_dict() and card.text == local_card.text
    for name in ("model.safetensors", "modeling_rnn_seq2seq.py", "configuration_rnn_seq2seq.py", "tokenizer.json",
                 "generation_config.json"):  # fmt: skip
        assert files[name] == (folder / name).read_bytes(), name
    pipeline_files = hub.files(pipeline_repo_id)
    assert {"pipeline_rnn_seq2seq.py"} | MODEL_FILES | TOKENIZER_FILES <= set(pipeline_files)
    custom = json.loads(pipeline_files["config.json"])["custom_pipelines"]
    assert custom["seq2seq-translation"]["impl"] == "pipeline_rnn_seq2seq.Seq2SeqTranslationPipeline"


def test_a_fresh_process_without_the_package_translates_bit_identically(hub, trained, pushed, sentences, tmp_path):
    folder, _, _ = trained
    repo_id, pipeline_repo_id = pushed
    head = hub.commits(repo_id)[-1].sha
    tokenizer = AutoTokenizer.from_pretrained(folder)
    decoder_input_ids = tokenizer(text_target=sentences[:4], return_tensors="pt", padding=True)["input_ids"]
    decoder_input_ids = torch.cat([decoder_input_ids, decoder_input_ids.flip(0)])[:, :6].contiguous()
    inputs = tmp_path / "inputs.safetensors"
    save_file({"decoder_input_ids": decoder_input_ids}, inputs)
    (tmp_path / "inputs.safetensors.json").write_text(json.dumps(sentences))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    requests_before = len(hub.state.requests)
    reported, result = in_fresh_process(
        "load-from-hub", repo_id, head, pipeline_repo_id, inputs, tmp_path / "outputs.safetensors",
        env=hub_env(hub, tmp_path, "fresh"), cwd=elsewhere,
    )  # fmt: skip
    remote = load_file(tmp_path / "outputs.safetensors")
    # transformers asked whether to run the repository's code for config.json; unanswered, the tokenizer loaded anyway.
    assert "Do you wish to run the custom code?" in result.stdout
    # It started from an empty cache: the weights and the code came from the server.
    served = hub.state.requests[requests_before:]
    for name in ("model.safetensors", "modeling_rnn_seq2seq.py", "tokenizer.json"):
        assert f"GET /{repo_id}/resolve/{head}/{name}" in served, name
    assert f"GET /{pipeline_repo_id}/resolve/{hub.commits(pipeline_repo_id)[-1].sha}/pipeline_rnn_seq2seq.py" in served

    # The reference: the trained folder loaded here, through the installed package.
    model = RNNSeq2SeqForConditionalGeneration.from_pretrained(folder).eval()
    batch = tokenizer(sentences, return_tensors="pt", padding=True)
    with torch.no_grad():
        local = {
            "input_ids": batch["input_ids"],
            "logits": model(**batch, decoder_input_ids=decoder_input_ids).logits,
            "greedy": model.generate(**batch, num_beams=1),
            "beam": model.generate(**batch),
        }
    for name in local:
        difference = (remote[name].double() - local[name].double()).abs().max()
        assert torch.equal(remote[name], local[name]), (name, difference)
    assert reported["num_beams"] == model.generation_config.num_beams == 2
    translations = tokenizer.batch_decode(local["beam"], skip_special_tokens=True)
    assert reported["translations"] == translations and any(translations)
    assert reported["pipeline_task"] == "seq2seq-translation"
    assert reported["pipeline"] == translations


def test_translate_script_takes_a_hub_id(hub, trained, pushed, sentences, tmp_path):
    folder, _, _ = trained
    repo_id, _ = pushed
    result = subprocess.run(
        [str(Path(sys.executable).with_name("hf-rnn-seq2seq-translate")), repo_id, "--batch_size", "3"],
        input="\n".join(sentences) + "\n", env=hub_env(hub, tmp_path, "cli"), cwd=tmp_path,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    model = RNNSeq2SeqForConditionalGeneration.from_pretrained(folder)
    expected = translate(model, AutoTokenizer.from_pretrained(folder), sentences)  # beam 2, from generation_config
    assert result.stdout.splitlines() == expected and any(expected)


def test_writes_need_the_token_and_reads_report_missing_files(hub, tmp_path):
    seen, _ = in_fresh_process("hub-errors", TOKEN, env=hub_env(hub, tmp_path, "errors"), cwd=tmp_path)
    assert seen == {"bad token": 401, "missing file": "EntryNotFound", "missing repo": "RepositoryNotFound"}
    assert "alice/denied" not in hub.state.repos
