"""The README's usage sections, run as written: a snippet that stops working fails here.

The Python blocks run in order as one script (each section continues with the `model` and `tokenizer` loaded in the
quickstart), in a folder that holds what they name: `runs/multi30k-de-en` (the session's tiny run on real Multi30k
lines, in conftest.py) and `new.de` / `new.en` (Multi30k pairs it never saw). Hub pushes go to the local Hub stand-in.
The multi-process launch lines run as printed, with a tiny model's flags appended. The links of the README, of docs/
and of the results index lead to files that exist.
"""

import ast
import gzip
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from hf_rnn_seq2seq.text_files import normalize
from hub_server import HubServer
from helpers import TINY, TOKEN, hub_env, read_json, run

REPO_ROOT = Path(__file__).resolve().parents[1]
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
NEW_PAIRS = 64
# The documents a user reads from the README on: their relative links must lead somewhere.
DOCUMENTS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")), REPO_ROOT / "benchmarks/results/README.md"]


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def readme_command(prefix: str) -> list[str]:
    """The README line that starts with `prefix` (its trailing comment removed), as an argument list."""
    lines = [line for line in README.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, f"the README should show one `{prefix} ...` line, found {lines}"
    return shlex.split(lines[0].split("#")[0])


def read_lines(path: Path, start: int, count: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle][start : start + count]


@pytest.fixture(scope="module")
def workdir(tiny_run, multi30k_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("readme")
    shutil.copytree(tiny_run.folder, workdir / "runs/multi30k-de-en", ignore=shutil.ignore_patterns("checkpoint-*"))
    # Validation pairs: the model trained on the first 200 training pairs only.
    for lang in ("de", "en"):
        lines = read_lines(multi30k_dir / f"val.{lang}.gz", 100, NEW_PAIRS)
        (workdir / f"new.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # The deployment section's export, which its Python block then runs.
    export = readme_command("hf-rnn-seq2seq-export-onnx")
    run([str(Path(sys.executable).with_name(export[0])), *export[1:]], cwd=workdir)
    return workdir


@pytest.fixture(scope="module")
def snippets_ran(workdir):
    """Every Python block of the README, in order, as one script against the local Hub."""
    script = "\n".join(python_blocks())
    (workdir / "readme_snippets.py").write_text(script, encoding="utf-8")
    with HubServer(token=TOKEN) as hub:
        result = run([sys.executable, "readme_snippets.py"], env=hub_env(hub, workdir, "readme", TOKEN), cwd=workdir)
        yield hub, result


def test_the_readme_has_the_usage_sections():
    blocks = python_blocks()
    assert "AutoModelForSeq2SeqLM.from_pretrained" in blocks[0] and "plot_attention(" in blocks[0]  # the quickstart
    assert any("Seq2SeqTrainer(" in b for b in blocks)
    assert any(".push_to_hub(" in b for b in blocks)
    assert any('pipeline("seq2seq-translation"' in b for b in blocks)


def test_the_readme_is_a_users_readme():
    """About 150-200 lines: the details live in docs/ and benchmarks/results/."""
    assert len(README.splitlines()) <= 220


def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_relative_links_lead_to_files_that_exist(document):
    targets = re.findall(r"\]\(([^)\s]+)\)", document.read_text(encoding="utf-8"))  # [text](target), ![alt](target)
    relative = [target for target in targets if not re.match(r"[a-z]+:", target)]
    if document == REPO_ROOT / "README.md":
        assert any(target.startswith("docs/") for target in relative)
    for target in relative:
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        assert linked.exists(), f"{document.name} links to a missing file: {target}"
        if anchor:
            assert anchor in heading_anchors(linked.read_text(encoding="utf-8")), f"{document.name}: no heading {target}"


def beam_translations(workdir: Path, sentences: list[str]) -> list[str]:
    """The reference: the README's model folder translated here, beam 5."""
    folder = workdir / "runs/multi30k-de-en"
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    with torch.no_grad():
        ids = model.generate(**tokenizer(sentences, return_tensors="pt", padding=True), num_beams=5)
    return tokenizer.batch_decode(ids, skip_special_tokens=True)


def test_loading_with_the_auto_classes_translates(snippets_ran, workdir):
    _, result = snippets_ran
    translations = ast.literal_eval(result.stdout.splitlines()[0])  # the snippet prints the two translations
    assert translations == beam_translations(workdir, ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."])


def test_the_quickstart_plots_the_attention(snippets_ran, workdir):
    assert (workdir / "attention.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_pipeline_snippet_translates_like_generate(snippets_ran, workdir):
    _, result = snippets_ran
    outputs = ast.literal_eval(result.stdout.splitlines()[1])
    expected = beam_translations(workdir, ["Ein Hund läuft.", "Zwei Männer."])
    assert outputs == [{"translation_text": text} for text in expected]


def test_the_onnxruntime_snippet_translates_like_generate(snippets_ran, workdir):
    _, result = snippets_ran
    assert ast.literal_eval(result.stdout.splitlines()[-1]) == beam_translations(workdir, ["Ein Hund läuft."])


def test_the_push_snippet_publishes_a_loadable_repository(snippets_ran, workdir):
    hub, _ = snippets_ran
    files = hub.files("you/multi30k-de-en")
    assert {"config.json", "model.safetensors", "modeling_rnn_seq2seq.py", "tokenizer.json", "README.md"} <= set(files)
    card = ModelCard(files["README.md"].decode())
    assert card.data.to_dict() == ModelCard.load(workdir / "runs/multi30k-de-en/README.md").data.to_dict()
    assert files["model.safetensors"] == (workdir / "runs/multi30k-de-en/model.safetensors").read_bytes()


def pair_loss(folder: Path, workdir: Path) -> float:
    """Mean teacher-forced cross-entropy of the model in `folder` on the new pairs (no label smoothing)."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    sources = (workdir / "new.de").read_text(encoding="utf-8").splitlines()
    targets = (workdir / "new.en").read_text(encoding="utf-8").splitlines()
    batch = tokenizer(sources, text_target=targets, return_tensors="pt", padding=True)
    batch["labels"] = batch["labels"].masked_fill(batch["labels"] == tokenizer.pad_token_id, -100)
    model.config.label_smoothing = 0.0
    with torch.no_grad():
        return model(**batch).loss.item()


def test_the_fine_tuning_snippet_lowers_the_loss_on_the_new_pairs_and_saves_a_loadable_model(snippets_ran, workdir):
    before, after = workdir / "runs/multi30k-de-en", workdir / "runs/finetuned"
    assert {"model.safetensors", "config.json", "modeling_rnn_seq2seq.py", "tokenizer.json"} <= {
        p.name for p in after.iterdir()
    }
    assert read_json(after / "config.json")["auto_map"]["AutoModelForSeq2SeqLM"].startswith("modeling_rnn_seq2seq.")
    loss_before, loss_after = pair_loss(before, workdir), pair_loss(after, workdir)
    # Measured 5.93 -> 5.71 nats; the tiny base model is barely trained, so the drop is modest but far above noise.
    assert loss_after < loss_before - 0.1, (loss_before, loss_after)


@pytest.mark.parametrize("launcher", ["torchrun --standalone --nproc_per_node 2", "accelerate launch --multi_gpu"])
def test_the_multi_process_launch_lines_train_with_two_processes(launcher, multi30k_slice, tmp_path):
    """The README's launch line as printed, on this machine without GPUs."""
    command = readme_command(launcher)
    command[0] = str(Path(sys.executable).with_name(command[0]))  # the launcher installed beside this interpreter
    command[command.index("train.py")] = str(REPO_ROOT / "train.py")
    # An odd number of test sentences: the last shard is short, so the gather must drop the sentence accelerate
    # repeats to fill it.
    data_dir = multi30k_slice(train=200, validation=24, test=25)
    out, alone = tmp_path / "ddp", tmp_path / "one-process"
    # One launcher batches by sentences, the other by tokens.
    batching = ["--max_tokens_per_batch", "600"] if launcher.startswith("accelerate") else []
    # A free port, picked by the launcher when it binds it (no race with other jobs on the machine): torchrun's
    # --standalone rendezvous on localhost:0. accelerate launch would take the default port 29500, which a concurrent
    # run may hold; PET_STANDALONE=1 turns on the same --standalone in the torchrun it calls (accelerate passes no value
    # for it, so torchrun's parser reads it from its PET_ environment variable).
    env = dict(os.environ, PET_STANDALONE="1") if launcher.startswith("accelerate") else None
    run(
        [*command, "--data_dir", str(data_dir), "--output_dir", str(out), *TINY, "--do_train", "--do_predict",
         "--eval_strategy", "no", "--save_strategy", "no", "--num_train_epochs", "1", *batching],
        env=env,
        cwd=tmp_path,
    )  # fmt: skip
    # Two processes shared each gradient step (DDP), instead of each training its own copy.
    results = read_json(out / "train_results.json")
    assert results["world_size"] == 2
    if batching:  # the two processes together trained on every pair's target tokens exactly once in the epoch
        targets = (data_dir / "train.en").read_text(encoding="utf-8").splitlines()
        labels = AutoTokenizer.from_pretrained(out)(text_target=[normalize(line) for line in targets])["input_ids"]
        assert results["train_target_tokens"] == sum(map(len, labels))
    # Generation was sharded over both processes and gathered back in order, without duplicates: line for line what
    # one process translates with the same model.
    run(
        [sys.executable, str(REPO_ROOT / "train.py"), "--data_dir", str(data_dir), "--output_dir", str(alone),
         "--model_name_or_path", str(out), *TINY, "--do_predict"],
        env=None,
        cwd=tmp_path,
    )  # fmt: skip
    translations = (out / "generated_predictions.txt").read_text(encoding="utf-8").splitlines()
    assert len(translations) == 25
    assert translations == (alone / "generated_predictions.txt").read_text(encoding="utf-8").splitlines()
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSeq2SeqLM.from_pretrained(out)
    ids = model.generate(**tokenizer(["Ein Hund läuft."], return_tensors="pt"), max_length=10)
    assert ids.shape[0] == 1 and ids[0, 0].item() == tokenizer.bos_token_id
