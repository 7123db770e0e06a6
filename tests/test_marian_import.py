"""Marian import: small Marian 1.12 `s2s` models trained here by Marian itself (the pymarian wheel, in its own
environment, .cache/marian-venv, which .ci/run makes) on the real data slice, converted, and compared with Marian's
own decoder: its greedy translations token for token, its n-best scores, its beam search."""

import contextlib
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy
import pytest
import torch
from helpers import REPO_ROOT, call_script
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from hf_rnn_seq2seq.marian import MarianImportError, import_marian, main
from hf_rnn_seq2seq.translation import translate

PYMARIAN = REPO_ROOT / ".cache" / "marian-venv" / "bin" / "pymarian"
COMMON = ["--dim-emb", "32", "--dim-rnn", "48", "--mini-batch", "16", "--learn-rate", "0.01", "--cpu-threads", "1",
          "--seed", "1", "--workspace", "256", "--quiet"]  # fmt: skip
# The configurations: Marian's default s2s (its target embeddings are not tied by default), layer
# normalisation, tied target embeddings, one table for everything (one vocabulary), two layers on each side (each
# encoder direction a stack of its own); a SentencePiece model that Marian trains for both sides; and a
# `--type nematus` model, saved under Nematus's names.
NEMATUS = ["--type", "nematus", "--enc-cell", "gru-nematus", "--dec-cell", "gru-nematus"]
VARIANTS = {
    "s2s": [],
    "layer-normalization": ["--layer-normalization"],
    "tied": ["--tied-embeddings"],
    "tied-all": ["--tied-embeddings-all"],
    "depth-2": ["--enc-depth", "2", "--dec-depth", "2"],
    "sentencepiece": ["--dim-vocabs", "400", "400"],
    "nematus": NEMATUS,
}
# Trained for two updates only, to be refused: (flags, the refusal).
REFUSED = {
    "nematus-layer-normalization": ([*NEMATUS, "--layer-normalization"],
                                    "--layer-normalization in a `nematus` model"),
    "lstm": (["--enc-cell", "lstm", "--dec-cell", "lstm"], "--enc-cell lstm is not supported: only GRU cells"),
    "bi-unidirectional": (["--enc-type", "bi-unidirectional", "--enc-depth", "2"], "--enc-type bi-unidirectional"),
    "transformer": (["--type", "transformer", "--transformer-heads", "2", "--transformer-dim-ffn", "32"],
                    "Marian model type 'transformer' is not supported"),
}  # fmt: skip
BEAM = 5


def marian(*args, cwd, stdin=None):
    """Marian's command line (`pymarian train|decode|vocab ...`) reading the file `stdin`; returns its output."""
    command = [str(PYMARIAN), *map(str, args)]
    with open(stdin, encoding="utf-8") if stdin else contextlib.nullcontext(subprocess.DEVNULL) as source:
        result = subprocess.run(command, cwd=cwd, stdin=source, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail(f"{command[1:3]} exited with {result.returncode}\n{result.stderr[-4000:]}")
    return result.stdout


@pytest.fixture(scope="module")
def marian_models(multi30k_slice, tmp_path_factory):
    """The variants trained and decoded by Marian (greedy, n-best and beam 5 without length normalisation), imported
    from the model file alone (the vocabularies its decoder.yml names)."""
    if not PYMARIAN.exists():
        pytest.fail(f"Marian's environment is missing ({PYMARIAN}); .ci/run makes it")
    data_dir = multi30k_slice(train=500, validation=8, test=40)
    work = tmp_path_factory.mktemp("marian")
    for split, name in (("train", "train"), ("test_2016_flickr", "test")):
        for lang in ("de", "en"):
            (work / f"{name}.{lang}").write_text((data_dir / f"{split}.{lang}").read_text(encoding="utf-8"))
    (work / "train.both").write_text((work / "train.de").read_text() + (work / "train.en").read_text())
    for name in ("de", "en", "both"):
        (work / f"vocab.{name}.yml").write_text(marian("vocab", stdin=work / f"train.{name}", cwd=work))
    def train_and_decode(name: str, flags: list[str]) -> dict:
        folder = work / name
        folder.mkdir()
        vocabularies = {"tied-all": [work / "vocab.both.yml"] * 2, "sentencepiece": [folder / "vocab.spm"] * 2}.get(
            name, [work / "vocab.de.yml", work / "vocab.en.yml"])  # fmt: skip
        updates = ["--after-batches", "2" if name in REFUSED else "120"]
        model_type = [] if "--type" in flags else ["--type", "s2s"]
        marian("train", *model_type, *COMMON, *flags, *updates, "-m", folder / "model.npz", "-t",
               work / "train.de", work / "train.en", "-v", *vocabularies, cwd=folder)  # fmt: skip
        model = {"npz": folder / "model.npz", "vocabularies": vocabularies}
        if name in VARIANTS:
            decode = ["decode", "-m", folder / "model.npz", "-v", *vocabularies, "--cpu-threads", "1", "--quiet"]
            # Greedy and n-best translations as the tokens Marian generated (a SentencePiece model's output is text
            # else), beam search's as text.
            for output, search in (("greedy", ["--beam-size", 1, "--no-spm-decode"]), ("beam", ["--beam-size", BEAM]),
                                   ("nbest", ["--beam-size", BEAM, "--n-best", "--no-spm-decode"])):  # fmt: skip
                model[output] = marian(*decode, *search, "--normalize", 0, stdin=work / "test.de", cwd=folder)
                model[output] = model[output].splitlines()
        return model

    # Two Marian processes at a time, one thread each.
    jobs = {**VARIANTS, **{name: flags for name, (flags, _) in REFUSED.items()}}
    with ThreadPoolExecutor(max_workers=2) as pool:
        models = dict(zip(jobs, pool.map(train_and_decode, jobs, jobs.values())))
    for name in VARIANTS:
        models[name]["folder"] = import_marian(models[name]["npz"], work / f"imported-{name}")
    return {"models": models, "work": work, "sources": (work / "test.de").read_text().splitlines()}


def load(folder):
    return AutoModelForSeq2SeqLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def length_caps(tokenizer, sources: list[str]) -> list[int]:
    """Marian's longest translation of each source (one a batch): 3 × its length, </s> included."""
    return [3 * len(ids) for ids in tokenizer(sources)["input_ids"]]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_greedy_translations_are_marians_token_for_token(marian_models, name):
    imported, sources = marian_models["models"][name], marian_models["sources"]
    model, tokenizer = load(imported["folder"])
    caps = length_caps(tokenizer, sources)
    batch = tokenizer(sources, return_tensors="pt", padding=True)
    with torch.no_grad():
        generated = model.generate(**batch, num_beams=1, max_new_tokens=max(caps))
    ours = []
    for ids, cap in zip(generated.tolist(), caps):
        tokens = tokenizer.convert_ids_to_tokens(ids[1 : cap + 1])  # greedy's prefix up to Marian's cap
        ours.append(" ".join(tokens[: tokens.index("</s>")] if "</s>" in tokens else tokens))
    assert ours == imported["greedy"]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_sentence_scores_are_marians_n_best_scores(marian_models, name):
    """Each of Marian's n-best translations scored by the model (teacher forcing): the sum of its tokens'
    log-probabilities, </s> included unless Marian stopped it at its length cap, within 1e-4 a token of Marian's."""
    imported, sources = marian_models["models"][name], marian_models["sources"]
    model, tokenizer = load(imported["folder"])
    caps = length_caps(tokenizer, sources)
    entries = [[field.strip() for field in line.split("|||")] for line in imported["nbest"]]
    assert len(entries) == BEAM * len(sources)
    rows = [int(index) for index, *_ in entries]
    labels = []
    for (index, translation, *_), row in zip(entries, rows):
        ids = tokenizer.convert_tokens_to_ids(translation.split())
        labels.append(ids + [model.config.eos_token_id] if len(ids) < caps[row] else ids)  # a capped one has no </s>
    width = max(map(len, labels))
    padded = torch.tensor([ids + [-100] * (width - len(ids)) for ids in labels])
    batch = tokenizer([sources[row] for row in rows], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch, labels=padded).logits
    log_probs = torch.log_softmax(logits.double(), dim=-1).gather(-1, padded.clamp(min=0)[..., None])[..., 0]
    ours = (log_probs * (padded != -100)).sum(-1)
    theirs = torch.tensor([float(scores.split("=")[1]) for _, _, scores, _ in entries], dtype=torch.float64)
    lengths = torch.tensor([len(ids) for ids in labels], dtype=torch.float64)
    assert ((ours - theirs).abs() / lengths).max() < 1e-4


@pytest.mark.parametrize("name", list(VARIANTS))
def test_beam_search_finds_marians_translations(marian_models, name):
    """Beam 5 without length normalisation, each sentence with Marian's length cap. generate() keeps its beam full
    when a hypothesis ends, Marian's beam shrinks: they can part where a hypothesis ends early in the search."""
    imported, sources = marian_models["models"][name], marian_models["sources"]
    model, tokenizer = load(imported["folder"])
    by_cap = {}  # the sentences of one length cap as one batch (a batch's translations are its sentences' alone)
    for row, cap in enumerate(length_caps(tokenizer, sources)):
        by_cap.setdefault(cap, []).append(row)
    ours = {}
    for cap, rows in by_cap.items():
        batch = tokenizer([sources[row] for row in rows], return_tensors="pt", padding=True)
        with torch.no_grad():
            ids = model.generate(**batch, num_beams=BEAM, length_penalty=0.0, max_new_tokens=cap)
        ours.update(zip(rows, tokenizer.batch_decode(ids, skip_special_tokens=True)))
    same = sum(ours[row] == theirs for row, theirs in enumerate(imported["beam"]))
    assert same >= 0.99 * len(sources), same


def test_the_folder_holds_marians_decoding_settings_and_vocabularies(marian_models):
    imported = marian_models["models"]["s2s"]
    model, tokenizer = load(imported["folder"])
    generation = model.generation_config
    assert (generation.num_beams, generation.length_penalty, generation.early_stopping) == (12, 0.0, True)
    assert generation.suppress_tokens == [tokenizer.convert_tokens_to_ids("<unk>")]  # Marian never generates it
    assert tokenizer("ein Haus")["input_ids"][-1] == tokenizer.convert_tokens_to_ids("</s>") == 0
    assert len(tokenizer) == model.config.source_vocab_size
    readme = (imported["folder"] / "README.md").read_text(encoding="utf-8")
    assert "Differences from Marian" in readme and "model.npz" in readme and "(beam 12, length normalisation 0" in readme
    # The translate command's path: Marian's beam-5 translations where Marian's length cap did not stop them.
    sources = marian_models["sources"]
    ours = translate(model, tokenizer, sources, num_beams=BEAM)
    ended = [row for row, (theirs, cap) in enumerate(zip(imported["beam"], length_caps(tokenizer, sources)))
             if len(theirs.split()) < cap]  # fmt: skip
    assert len(ended) > len(sources) / 2 and all(ours[row] == imported["beam"][row] for row in ended)
    shared = load(marian_models["models"]["tied-all"]["folder"])[0]
    assert shared.config.source_vocab_size is None and shared.lm_head.weight is shared.model.encoder.embed_tokens.weight


@pytest.mark.parametrize("name", list(REFUSED))
def test_what_the_model_does_not_represent_is_refused_by_name(marian_models, name, tmp_path):
    with pytest.raises(MarianImportError, match=REFUSED[name][1]):
        import_marian(marian_models["models"][name]["npz"], tmp_path / name)


def test_vocabularies_of_other_sizes_are_refused(marian_models, tmp_path):
    imported = marian_models["models"]["s2s"]
    both = marian_models["work"] / "vocab.both.yml"
    with pytest.raises(MarianImportError, match="not the vocabularies it was trained with"):
        import_marian(imported["npz"], tmp_path / "out", [both, both])


def test_the_console_script_takes_the_vocabularies_by_flag(marian_models, tmp_path, monkeypatch, capsys):
    imported = marian_models["models"]["depth-2"]
    out = tmp_path / "by-flag"
    status, _, err = call_script(main, imported["npz"], out, "--vocabs", *imported["vocabularies"],
                                 monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert status == 0 and (out / "model.safetensors").is_file(), err
    status, _, err = call_script(main, tmp_path / "absent.npz", tmp_path / "x", monkeypatch=monkeypatch, capsys=capsys)
    assert status == 2 and "absent.npz not found" in err


class RecordsItsUnpickling:
    """Unpickling it would create the file it names: a model file that holds it must be refused unread."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_a_model_file_holding_pickled_objects_is_refused_without_running_them(tmp_path):
    marker = tmp_path / "unpickled"
    payload = numpy.empty(1, dtype=object)
    payload[0] = RecordsItsUnpickling(marker)
    numpy.savez(tmp_path / "model.npz", **{"special:model.yml": numpy.frombuffer(b"type: s2s\n", dtype=numpy.int8)},
                decoder_Wemb=payload)  # fmt: skip
    with pytest.raises(MarianImportError, match="not a Marian .npz model without pickles"):
        import_marian(tmp_path / "model.npz", tmp_path / "out")
    assert not marker.exists()


def test_a_file_without_marians_options_is_refused(tmp_path):
    numpy.savez(tmp_path / "model.npz", decoder_Wemb=numpy.zeros((3, 2), dtype=numpy.float32))
    with pytest.raises(MarianImportError, match="has no 'special:model.yml' entry"):
        import_marian(tmp_path / "model.npz", tmp_path / "out")
