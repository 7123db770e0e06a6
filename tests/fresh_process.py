"""What the tests run in a fresh interpreter, as a user's own script would: a process of its own, with its own
environment (a Hub client reads HF_ENDPOINT when it is imported; a machine that never installed this package).

    python tests/fresh_process.py translate-folder FOLDER SOURCES.json MAX_SOURCE_LENGTH
    python tests/fresh_process.py push FOLDER REPO_ID PIPELINE_REPO_ID
    python tests/fresh_process.py load-from-hub REPO_ID REVISION PIPELINE_REPO_ID INPUTS OUTPUTS
    python tests/fresh_process.py hub-errors TOKEN

Each prints its result as JSON on its last line of output (load-from-hub writes OUTPUTS and OUTPUTS.json).
"""

import json
import sys


def translate_folder(folder: str, sources_path: str, max_source_length: str) -> dict:
    """A saved folder through the Auto classes and its own code (the package is not imported), translated with its
    generation config; sources cut to the length train.py cuts them to."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    sources = json.loads(open(sources_path, encoding="utf-8").read())
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)  # it reads config.json
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True)
    # The saved code, not the installed package, must have built the model.
    assert "hf_rnn_seq2seq" not in sys.modules
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    batch = tokenizer(sources, return_tensors="pt", padding=True, truncation=True, max_length=int(max_source_length))
    ids = model.generate(**batch)
    return {
        "translations": tokenizer.batch_decode(ids, skip_special_tokens=True),
        "num_beams": model.generation_config.num_beams,
    }


def push(folder: str, repo_id: str, pipeline_repo_id: str) -> list[str]:
    """model.push_to_hub + tokenizer.push_to_hub + the model card to one repository, the pipeline to another."""
    from huggingface_hub import ModelCard
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

    import hf_rnn_seq2seq  # noqa: F401  (registers the model and the pipeline task)

    model = AutoModelForSeq2SeqLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    urls = [model.push_to_hub(repo_id), tokenizer.push_to_hub(repo_id)]
    # Both wrote a generic README.md (or kept the one on the Hub); the model card written by train.py replaces it.
    ModelCard.load(f"{folder}/README.md").push_to_hub(repo_id)
    # The pipeline's own push: model, tokenizer and the pipeline code, recorded in config.json.
    translator = pipeline("seq2seq-translation", model=model, tokenizer=tokenizer)
    urls.append(translator.push_to_hub(pipeline_repo_id))
    return [str(url) for url in urls]


def load_from_hub(repo_id: str, revision: str, pipeline_repo_id: str, inputs_path: str, outputs_path: str) -> dict:
    """Where importing hf_rnn_seq2seq fails: only transformers, huggingface_hub and the server's files are used.
    Writes logits, greedy and beam ids to OUTPUTS; returns the translations and the pipeline's."""
    from remote_code_worker import BlockPackage

    sys.meta_path.insert(0, BlockPackage())
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

    model = AutoModelForSeq2SeqLM.from_pretrained(repo_id, revision=revision, trust_remote_code=True).eval()
    # No trust_remote_code: the tokenizer needs none of the repository's code (stdin is closed, so transformers'
    # question whether to run it for config.json gets no answer, and it reads the config without it).
    tokenizer = AutoTokenizer.from_pretrained(repo_id, revision=revision)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    assert type(tokenizer).__module__.startswith("transformers."), type(tokenizer).__module__
    assert "hf_rnn_seq2seq" not in sys.modules
    sentences = json.loads(open(inputs_path + ".json", encoding="utf-8").read())
    batch = tokenizer(sentences, return_tensors="pt", padding=True)
    decoder_input_ids = load_file(inputs_path)["decoder_input_ids"]
    with torch.no_grad():
        outputs = {
            "input_ids": batch["input_ids"],
            "logits": model(**batch, decoder_input_ids=decoder_input_ids).logits,
            "greedy": model.generate(**batch, num_beams=1),
            "beam": model.generate(**batch),  # the pushed generation_config.json: beam search
        }
    save_file({name: tensor.contiguous() for name, tensor in outputs.items()}, outputs_path)
    translator = pipeline(model=pipeline_repo_id, trust_remote_code=True)  # the task comes from the repository
    return {
        "translations": tokenizer.batch_decode(outputs["beam"], skip_special_tokens=True),
        "pipeline": [r["translation_text"] for r in translator(sentences, batch_size=4)],
        "pipeline_task": translator.task,
        "num_beams": model.generation_config.num_beams,
    }


def hub_errors(token: str) -> dict:
    """What the Hub answers to a write with a wrong token, a missing file and a missing repository."""
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError

    api, seen = HfApi(), {}
    try:
        api.create_repo("alice/denied", token="wrong")
    except HfHubHTTPError as error:
        seen["bad token"] = error.response.status_code
    api.create_repo("alice/empty", token=token)
    try:
        hf_hub_download("alice/empty", "config.json")
    except EntryNotFoundError:
        seen["missing file"] = "EntryNotFound"
    try:
        hf_hub_download("alice/nothing-here", "config.json")
    except RepositoryNotFoundError:
        seen["missing repo"] = "RepositoryNotFound"
    return seen


COMMANDS = {
    "translate-folder": translate_folder,
    "push": push,
    "load-from-hub": load_from_hub,
    "hub-errors": hub_errors,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        raise SystemExit(__doc__)
    result = COMMANDS[sys.argv[1]](*sys.argv[2:])
    print("\n" + json.dumps(result))  # on a line of its own: transformers may have left a question unended
