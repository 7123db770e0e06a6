"""The attention demo: what it computes (hypotheses, scores, attention) against generate() itself, its refusals, and
the page in a real browser (Debian's Chromium driven by Playwright), served by the console script as a user starts
it."""

import os
import queue
import re
import socket
import subprocess
import sys
import threading
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BartConfig, BartForConditionalGeneration

from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration
from hf_rnn_seq2seq.demo import ModelShelf
from hf_rnn_seq2seq.demo.heatmap import attended, heatmap_html, hypotheses_html
from hf_rnn_seq2seq.hypotheses import Decoding, Hypothesis, beam_sweep, translate_with_attention
from hf_rnn_seq2seq.tokenization import reader_tokens
from hf_rnn_seq2seq.translation import decode, load_model
from helpers import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (.ci/run installs it); Playwright's own download is unreachable
# What a page or server may take on a loaded 2-core machine (a limit that only turns a hang into a failure, in ms).
BROWSER_TIMEOUT_MS = 180_000
SENTENCE = "Ein Mann mit einem orangefarbenen Hut starrt auf etwas."
TOO_LONG = " ".join(["Hund"] * 10_000)


@pytest.fixture(scope="module")
def trained(request):
    """The tiny run's model; HF_RNN_SEQ2SEQ_DEMO_MODEL names another (the README's screenshot is this test's, run on
    the default model: see the README)."""
    folder = os.environ.get("HF_RNN_SEQ2SEQ_DEMO_MODEL") or request.getfixturevalue("tiny_run").folder
    model, tokenizer = load_model(str(folder))
    return Path(folder), model, tokenizer


@pytest.fixture(scope="module")
def fixed_context_folder(trained, tmp_path_factory):
    """A second model for the side by side: attention_type "none", the trained model's tokenizer, random weights."""
    folder, model, tokenizer = trained
    torch.manual_seed(0)
    config = RNNSeq2SeqConfig(vocab_size=len(tokenizer), embedding_dim=16, hidden_size=24, attention_type="none")
    fixed = RNNSeq2SeqForConditionalGeneration(config).eval()
    fixed.generation_config.max_new_tokens = 12
    out = tmp_path_factory.mktemp("fixed_context")
    fixed.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def bart_folder(tmp_path_factory):
    """A model of another architecture."""
    config = BartConfig(vocab_size=50, d_model=8, encoder_layers=1, decoder_layers=1, encoder_attention_heads=1,
                        decoder_attention_heads=1, encoder_ffn_dim=8, decoder_ffn_dim=8)  # fmt: skip
    out = tmp_path_factory.mktemp("bart")
    BartForConditionalGeneration(config).save_pretrained(out)
    return out


def generated_rows(model, tokenizer, sentence, **kwargs):
    """generate()'s own hypotheses: ids without the start token, cut after EOS."""
    out = model.generate(**tokenizer([sentence], return_tensors="pt"), **kwargs)
    rows = []
    for row in out[:, 1:].tolist():
        rows.append(row[: row.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in row else row)
    return rows


def test_greedy_hypothesis_has_generates_tokens_score_and_attention(trained):
    """The teacher-forced pass gives what generate() saw while generating: the same attention rows and the summed
    log-probabilities of its per-step scores."""
    _, model, tokenizer = trained
    translation = translate_with_attention(model, tokenizer, SENTENCE, Decoding("greedy"))
    (best,) = translation.hypotheses
    batch = tokenizer([SENTENCE], return_tensors="pt")
    out = model.generate(**batch, num_beams=1, do_sample=False, output_attentions=True, output_scores=True,
                         return_dict_in_generate=True)  # fmt: skip
    ids = generated_rows(model, tokenizer, SENTENCE, num_beams=1, do_sample=False)[0]
    assert best.token_ids == ids and best.text == decode(tokenizer, np.array([ids]))[0]
    steps = len(ids)
    weights = torch.cat([step[-1][0, 0] for step in out.cross_attentions[:steps]], dim=0).numpy()
    np.testing.assert_allclose(best.attention, weights, atol=1e-5)
    log_probability = sum(torch.log_softmax(out.scores[t][0], -1)[ids[t]].item() for t in range(steps))
    assert best.log_probability == pytest.approx(log_probability, abs=1e-4)
    assert translation.source_tokens == reader_tokens(tokenizer, tokenizer.convert_ids_to_tokens(batch["input_ids"][0]))
    assert best.tokens == reader_tokens(tokenizer, tokenizer.convert_ids_to_tokens(ids))
    assert best.attention.shape == (len(best.tokens), len(translation.source_tokens))


def test_beam_and_sampled_hypotheses_are_generates(trained):
    _, model, tokenizer = trained
    beam = translate_with_attention(model, tokenizer, SENTENCE, Decoding("beam search", 4, 0.6, num_return_sequences=3))
    out = model.generate(**tokenizer([SENTENCE], return_tensors="pt"), num_beams=4, length_penalty=0.6,
                         num_return_sequences=3, output_scores=True, return_dict_in_generate=True)  # fmt: skip
    expected = generated_rows(model, tokenizer, SENTENCE, num_beams=4, length_penalty=0.6, num_return_sequences=3)
    assert [hypothesis.token_ids for hypothesis in beam.hypotheses] == expected
    assert [hypothesis.beam_score for hypothesis in beam.hypotheses] == pytest.approx(out.sequences_scores.tolist())
    transition = model.compute_transition_scores(out.sequences, out.scores, out.beam_indices, normalize_logits=False)
    for hypothesis, scores in zip(beam.hypotheses, transition):
        assert hypothesis.log_probability == pytest.approx(scores[: len(hypothesis.token_ids)].sum().item(), abs=1e-4)
    sampling = Decoding("sampling", temperature=0.7, top_p=0.9, num_return_sequences=2, seed=3)
    sampled = translate_with_attention(model, tokenizer, SENTENCE, sampling)
    torch.manual_seed(3)
    expected = generated_rows(model, tokenizer, SENTENCE, do_sample=True, num_beams=1, temperature=0.7, top_p=0.9,
                              num_return_sequences=2)  # fmt: skip
    assert [hypothesis.token_ids for hypothesis in sampled.hypotheses] == expected


def test_beam_sweep_is_the_best_hypothesis_of_each_beam_size(trained):
    _, model, tokenizer = trained
    points = beam_sweep(model, tokenizer, SENTENCE, beam_sizes=[1, 3])
    for point in points:
        (ids,) = generated_rows(model, tokenizer, SENTENCE, num_beams=point.num_beams, do_sample=False)
        assert point.length == len(ids)
    assert points[0].beam_score is None and points[1].beam_score is not None


@pytest.mark.parametrize(
    "sentence, decoding, message",
    [
        ("  ", Decoding(), "type a sentence"),
        (TOO_LONG, Decoding(), "10001 tokens long; these models read at most 128"),
        (SENTENCE, Decoding("greedy", num_return_sequences=2), "greedy search finds one hypothesis"),
        (SENTENCE, Decoding("beam search", num_beams=2, num_return_sequences=3), "returns at most 2 hypotheses"),
        (SENTENCE, Decoding("sampling", temperature=0.0), "temperature above 0"),
        (SENTENCE, Decoding("viterbi"), "unknown decoding 'viterbi'"),
    ],
)
def test_refused_requests_say_why(trained, sentence, decoding, message):
    _, model, tokenizer = trained
    with pytest.raises(ValueError, match=message):
        translate_with_attention(model, tokenizer, sentence, decoding)


def test_the_shelf_serves_models_in_the_dtype_it_is_given(trained):
    """`hf-rnn-seq2seq-demo --dtype bfloat16`: the page's hypotheses are generate()'s in bfloat16."""
    folder = trained[0]
    model, tokenizer = ModelShelf([str(folder)], dtype=torch.bfloat16).get(str(folder))
    assert model.dtype == torch.bfloat16
    (best,) = translate_with_attention(model, tokenizer, SENTENCE, Decoding("greedy")).hypotheses
    assert [best.token_ids] == generated_rows(model, tokenizer, SENTENCE, num_beams=1, do_sample=False)
    assert best.attention.shape[0] == len(best.tokens) and np.isfinite(best.log_probability)


def test_a_model_of_another_architecture_is_refused_by_name(bart_folder):
    with pytest.raises(ValueError, match="is a 'bart' model; these tools run RNNSeq2Seq models"):
        load_model(str(bart_folder))


def test_heatmap_html_is_a_target_by_source_grid_with_the_attended_tokens_highlighted():
    source, target = ["Ein", "<Mann>", "</s>"], ["A", "man", "</s>"]
    weights = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
    assert attended(weights, 1) == [1] and attended(np.array([[0.45, 0.4, 0.15]]), 0) == [0, 1]
    html = heatmap_html(source, target, weights, selected=1)
    assert html.count("<td ") == 9 and 'data-rows="3" data-cols="3"' in html
    assert "&lt;Mann&gt;" in html and "<Mann>" not in html  # tokens are text, never markup
    assert html.count("source-token attended") == 1 and "attended to: &lt;Mann&gt; (0.70)" in html
    assert '<tr class="selected"><th class="target-token" data-row="1">man' in html
    with pytest.raises(ValueError, match=r"do not match 2 x 3"):
        heatmap_html(source, target[:2], weights)
    sampled = Hypothesis("<b>A</b> man", [5, 2], ["A", "</s>"], -1.23456, None, None)
    table = hypotheses_html([sampled])
    assert "<td class=\"text\">&lt;b&gt;A&lt;/b&gt; man</td><td>-1.235</td><td></td>" in table  # no beam score


# --- the page in a browser ---------------------------------------------------------------------------------------


LOCAL_URL = re.compile(r"Running on local URL:\s+(https?://\S+?)/?\s*$")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serving(command: list[str], log: Path, env: dict | None = None):
    """Run a command that serves the demo; yield the URL it serves on, as it prints it once it listens.

    No port is chosen for it: Gradio binds the first port it can from GRADIO_SERVER_PORT on, and moves on to the next
    if another process holds one (GRADIO_SERVER_PORT is a port that was free a moment ago, so it rarely has to).
    """
    env = {**os.environ, **(env or {}), "GRADIO_SERVER_PORT": str(free_port()), "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              text=True, env=env)  # fmt: skip
    urls = queue.Queue()

    def copy_output():  # to the log, and the URL to the queue; None once the output ends (the server exited)
        with open(log, "w", encoding="utf-8") as output:
            for line in server.stdout:
                output.write(line)
                output.flush()
                if match := LOCAL_URL.search(line):
                    urls.put(match.group(1))
        urls.put(None)

    reader = threading.Thread(target=copy_output, daemon=True)
    reader.start()
    try:
        try:
            url = urls.get(timeout=BROWSER_TIMEOUT_MS / 1000)
        except queue.Empty:
            url = None
        if url is None:
            pytest.fail(f"the demo did not start (exit status {server.poll()}):\n{log.read_text()[-4000:]}")
        url += "/"
        urllib.request.urlopen(url, timeout=BROWSER_TIMEOUT_MS / 1000)  # it listens: this waits, it does not retry
        yield url
    finally:
        server.terminate()
        server.wait(timeout=60)
        reader.join(timeout=60)


@pytest.fixture(scope="module")
def served(trained, fixed_context_folder, tmp_path_factory):
    """`hf-rnn-seq2seq-demo TRAINED FIXED_CONTEXT` in its own process, as a user starts it."""
    log = tmp_path_factory.mktemp("demo") / "demo.log"
    script = Path(sys.executable).with_name("hf-rnn-seq2seq-demo")
    with serving([str(script), str(trained[0]), str(fixed_context_folder)], log) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"the browser tests drive Debian's chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=BROWSER_TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


@contextmanager
def fresh_page(browser, url: str, **context_options):
    """A page of its own (a new browser context: no cookies, storage or Gradio session of another test)."""
    context = browser.new_context(**context_options)
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(url)
        yield page
    finally:
        context.close()


@pytest.fixture
def page(served, browser):
    with fresh_page(browser, served, viewport={"width": 1200, "height": 1400}) as page:
        yield page


def status_after(page, click) -> str:
    """Click, then wait until the status line shows another answer and nothing is pending; return it. (Every event
    answers in the status line, so two answers in a row must differ.)"""
    before = page.locator("#status").inner_text()
    click()
    page.wait_for_function(
        "before => document.querySelector('#status').innerText !== before && !document.querySelector('.pending')",
        arg=before,
    )  # fmt: skip
    return page.locator("#status").inner_text()


def translate_in_page(page, sentence: str, model: str | None = None) -> str:
    if model is not None:
        page.locator("#model input").fill(model)
        page.locator("#model input").press("Enter")
    page.locator("#sentence textarea").fill(sentence)
    return status_after(page, lambda: page.locator("#translate").click())


def test_page_translates_as_generate_and_shows_its_attention(page, trained, tmp_path):
    """Beam search with 3 hypotheses: the page's hypotheses are generate()'s; the heatmap is target x source with the
    reader's tokens as labels; hovering a cell shows its weight; selecting a target token highlights what it attended
    to. The screenshot is kept (HF_RNN_SEQ2SEQ_ARTIFACTS, or the test's temporary folder)."""
    from playwright.sync_api import expect

    folder, model, tokenizer = trained
    page.locator("#hypotheses-count input[type=range]").fill("3")
    assert translate_in_page(page, SENTENCE).startswith("Translated with")
    rows = generated_rows(model, tokenizer, SENTENCE, num_beams=5, num_return_sequences=3)
    expected = [decode(tokenizer, np.array([ids]))[0] for ids in rows]
    expect(page.locator("#hypotheses tbody tr")).to_have_count(3)
    expect(page.locator("#hypotheses td.text")).to_have_text(expected)

    reference = translate_with_attention(model, tokenizer, SENTENCE, Decoding("beam search", 5, num_return_sequences=3))
    best, third = reference.hypotheses[0], reference.hypotheses[2]
    assert third.tokens != best.tokens  # so that the heatmap's rows tell which hypothesis it shows
    grid = page.locator("#heatmap table.attention")
    expect(grid.locator("tbody tr")).to_have_count(len(best.tokens))
    expect(grid.locator("tbody tr").first.locator("td")).to_have_count(len(reference.source_tokens))
    expect(grid.locator("thead th.source-token")).to_have_text(reference.source_tokens)
    expect(grid.locator("tbody th.target-token")).to_have_text(best.tokens)

    cell = grid.locator("td[data-row='1'][data-col='0']")
    expect(cell.locator(".weight")).to_be_hidden()
    cell.hover()
    expect(cell.locator(".weight")).to_be_visible()
    assert float(cell.locator(".weight").inner_text()) == pytest.approx(best.attention[1, 0], abs=0.006)

    page.locator("#target-token label").nth(1).click()
    expect(page.locator("#heatmap tr.selected th")).to_have_text(best.tokens[1])
    highlighted = [reference.source_tokens[column] for column in sorted(attended(best.attention, 1))]
    expect(page.locator("#heatmap th.source-token.attended")).to_have_text(highlighted)

    page.locator("#hypothesis label").nth(2).click()  # the third hypothesis's attention, no token selected
    expect(page.locator("#heatmap tbody th.target-token")).to_have_text(third.tokens)
    expect(page.locator("#heatmap tr.selected")).to_have_count(0)
    page.locator("#hypothesis label").nth(0).click()  # back to the best, a token selected: the screenshot
    expect(page.locator("#heatmap tbody th.target-token")).to_have_text(best.tokens)
    page.locator("#target-token label").nth(1).click()
    expect(page.locator("#heatmap tr.selected th")).to_have_text(best.tokens[1])
    artifacts = Path(os.environ.get("HF_RNN_SEQ2SEQ_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=artifacts / "demo.png", full_page=True)
    assert (artifacts / "demo.png").stat().st_size > 10_000


def test_page_puts_two_models_side_by_side_and_sweeps_the_beam(page, trained, fixed_context_folder):
    from playwright.sync_api import expect

    folder, model, tokenizer = trained
    fixed, fixed_tokenizer = load_model(str(fixed_context_folder))
    page.get_by_text("Side by side").click()
    page.locator("#sentence textarea").fill(SENTENCE)
    assert "side by side" in status_after(page, lambda: page.locator("#compare").click())
    for side, (side_model, side_tokenizer) in (("left", (model, tokenizer)), ("right", (fixed, fixed_tokenizer))):
        (ids,) = generated_rows(side_model, side_tokenizer, SENTENCE, num_beams=5, num_return_sequences=1)
        expect(page.locator(f"#{side}-translation textarea")).to_have_value(decode(side_tokenizer, np.array([ids]))[0])
    expect(page.locator("#left-heatmap table.attention")).to_have_count(1)
    expect(page.locator("#right-heatmap")).to_contain_text("no attention")

    page.get_by_text("Beam size 1–10").click()
    assert status_after(page, lambda: page.locator("#sweep").click()).startswith("Beam sizes 1–10")
    expect(page.locator("#sweep-plot img, #sweep-plot svg").first).to_be_visible()


@pytest.mark.parametrize("case", ["empty", "10,000 words", "unknown Hub id", "another architecture"])
def test_page_answers_bad_input_with_a_message_and_keeps_serving(page, trained, bart_folder, case):
    """A translation on the page, then the bad request: a message, and the last translation's outputs cleared; then
    the page translates again."""
    from playwright.sync_api import expect

    folder = str(trained[0])
    sentence, model, message = {
        "empty": ("", folder, "Type a sentence to translate"),
        "10,000 words": (TOO_LONG, folder, "these models read at most 128"),
        "unknown Hub id": (SENTENCE, "nobody/no-such-model", "Could not load 'nobody/no-such-model'"),
        "another architecture": (SENTENCE, str(bart_folder), "is a 'bart' model"),
    }[case]
    assert translate_in_page(page, SENTENCE, folder) == f"Translated with {folder}."
    expect(page.locator("#hypotheses tbody tr")).to_have_count(1)
    expect(page.locator("#heatmap table.attention")).to_have_count(1)
    status = translate_in_page(page, sentence, model)
    assert status.startswith("⚠️") and message in status and "Traceback" not in status
    expect(page.locator("#hypotheses tbody tr")).to_have_count(0)
    expect(page.locator("#heatmap table")).to_have_count(0)
    assert translate_in_page(page, SENTENCE, folder) == f"Translated with {folder}."
    expect(page.locator("#heatmap table.attention")).to_have_count(1)


def test_app_py_serves_the_models_and_examples_a_space_names(trained, fixed_context_folder, browser, tmp_path):
    """app.py as a Space runs it: the models from DEMO_MODELS, the example sentences from the file DEMO_EXAMPLES."""
    from playwright.sync_api import expect

    examples = tmp_path / "examples.txt"
    examples.write_text("Zwei Hunde spielen im Schnee.\nEin Mann fährt Fahrrad.\n", encoding="utf-8")
    env = {"DEMO_MODELS": f"{trained[0]} {fixed_context_folder}", "DEMO_EXAMPLES": str(examples)}
    with serving([sys.executable, str(REPO_ROOT / "app.py")], tmp_path / "app.log", env) as url:
        with fresh_page(browser, url) as page:
            page.get_by_text("Ein Mann fährt Fahrrad.").click()  # an example fills the sentence box
            expect(page.locator("#sentence textarea")).to_have_value("Ein Mann fährt Fahrrad.")
            assert status_after(page, lambda: page.locator("#translate").click()) == f"Translated with {trained[0]}."
            page.get_by_text("Side by side").click()
            expect(page.locator("#right-model input")).to_have_value(str(fixed_context_folder))
