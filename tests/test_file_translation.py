"""The translate command on files: window by window, resumable after kill -9 at any point, shared by several
processes, memory flat in the file's size, empty lines kept and bad bytes refused by line number."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hf_rnn_seq2seq import cli
from hf_rnn_seq2seq.translation import translate
from helpers import call_script, read

SCRIPT = str(Path(sys.executable).with_name("hf-rnn-seq2seq-translate"))
WINDOW = 7  # lines: the 50-line input below is 8 windows, the last one short


@pytest.fixture(scope="module")
def source_file(multi30k_dir, tmp_path_factory):
    """50 real test sentences, with an empty line, a whitespace-only one and a final line without its line end."""
    lines = read(multi30k_dir / "test_2016_flickr.de.gz", 50)
    lines[4], lines[16] = "", " \t "
    path = tmp_path_factory.mktemp("source") / "source.de"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path, lines


@pytest.fixture(scope="module")
def uninterrupted(model_folder, source_file, tmp_path_factory):
    """The file an uninterrupted run writes, in a fresh process as a user runs it."""
    output = tmp_path_factory.mktemp("uninterrupted") / "out.en"
    translate_file(model_folder[0], source_file[0], output)
    return output.read_bytes()


def translate_file(folder, source, output, *extra, command=(SCRIPT,), env=None):
    result = subprocess.run(
        [*command, str(folder), "--input", str(source), "--output", str(output), "--window", str(WINDOW), *extra],
        capture_output=True, text=True, timeout=300, env=env, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_a_file_translates_line_for_line_as_translate_does(model_folder, source_file, uninterrupted, tmp_path):
    folder, model, tokenizer = model_folder
    path, lines = source_file
    expected = translate(model, tokenizer, lines)
    assert uninterrupted.decode("utf-8").split("\n") == [*expected, ""]
    assert expected[4] == expected[16] == ""  # empty and blank lines stay, as empty lines
    assert not (tmp_path / "out.en.partial").exists()


def test_stdin_and_input_without_output_stream_the_same_lines(model_folder, source_file, uninterrupted, monkeypatch,
                                                              capsys):
    path, lines = source_file
    status, out, _ = call_script(cli.translate_main, model_folder[0], "--input", path, "--window", WINDOW,
                                 monkeypatch=monkeypatch, capsys=capsys)
    assert status == 0 and out.encode() == uninterrupted
    status, out, _ = call_script(cli.translate_main, model_folder[0], "--window", WINDOW, stdin="\n".join(lines),
                                 monkeypatch=monkeypatch, capsys=capsys)
    assert status == 0 and out.encode() == uninterrupted


# Each kills the run (SIGKILL: nothing is cleaned up) at one point of its writing: on the given call of the patched
# function. The run writes, in order: the progress record, window 0's file, the record counting it appended, window 1's
# file, ... (`_write_durably`); it appends windows to the output in `merge`, the first call before any window.
KILL_POINTS = {
    "window file half written": ("_write_durably", 4, "half"),
    "progress record half written": ("_write_durably", 5, "half"),
    "output appended, record not updated": ("_record", 3, "before"),
    "window done, not appended": ("merge", 4, "before"),
}

KILLER = """
import os, signal, sys
from hf_rnn_seq2seq import cli, file_translation
# Ctrl-C in a terminal raises KeyboardInterrupt; tests started in the background by a non-interactive shell
# (`bash .ci/run &`) run with SIGINT ignored, as POSIX has it, and children inherit that.
signal.signal(signal.SIGINT, signal.default_int_handler)
function_name, calls, where = sys.argv[1], int(sys.argv[2]), sys.argv[3]
owner = file_translation if function_name == "_write_durably" else file_translation.TranslationJob
original, seen = getattr(owner, function_name), []

def patched(*args):
    seen.append(1)
    if len(seen) == calls:
        if where == "half":  # _write_durably(path, data): half the data in its temporary file
            path, data = args
            path.with_name(path.name + ".tmp").write_bytes(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGINT if where == "interrupt" else signal.SIGKILL)
    return original(*args)

setattr(owner, function_name, patched)
cli.translate_main(sys.argv[4:])
"""


def kill_a_run(folder, source, output, point, *extra):
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, *map(str, KILL_POINTS[point]), str(folder), "--input", str(source),
         "--output", str(output), "--window", str(WINDOW), *extra],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert (output.parent / f"{output.name}.partial" / "progress.json").exists()


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_run_killed_anywhere_resumes_to_the_same_bytes(model_folder, source_file, uninterrupted, tmp_path, point):
    output = tmp_path / "out.en"
    kill_a_run(model_folder[0], source_file[0], output, point)
    resumed = translate_file(model_folder[0], source_file[0], output)
    assert output.read_bytes() == uninterrupted
    assert not (tmp_path / "out.en.partial").exists()
    # The resumed run translated only what the killed one had not finished.
    translated = [int(done) for done, _ in re.findall(r"(\d+)/(\d+) \[", resumed.stderr)]
    assert 0 < translated[-1] < 50


def test_ctrl_c_says_how_to_resume_and_the_same_command_resumes(model_folder, source_file, uninterrupted, tmp_path):
    output = tmp_path / "out.en"
    interrupted = subprocess.run(
        [sys.executable, "-c", KILLER, "merge", "3", "interrupt", str(model_folder[0]), "--input",
         str(source_file[0]), "--output", str(output), "--window", str(WINDOW)],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert interrupted.returncode == 130, interrupted.stderr[-3000:]
    assert f"interrupted: run the same command again to resume {output}" in interrupted.stderr
    assert "Traceback" not in interrupted.stderr
    translate_file(model_folder[0], source_file[0], output)
    assert output.read_bytes() == uninterrupted


def test_a_partial_run_is_not_resumed_with_other_settings(model_folder, source_file, tmp_path, monkeypatch, capsys):
    output = tmp_path / "out.en"
    folder, path = model_folder[0], source_file[0]
    kill_a_run(folder, path, output, "window done, not appended")
    before = output.read_bytes()
    status, _, err = call_script(cli.translate_main, folder, "--input", path, "--output", output, "--window", WINDOW,
                                 "--num_beams", "3", monkeypatch=monkeypatch, capsys=capsys)
    assert status == 2
    assert "partial translation made with other settings (num_beams differ)" in err
    assert "out.en.partial to start over" in err
    assert output.read_bytes() == before


def test_two_processes_write_the_file_one_process_writes(model_folder, source_file, uninterrupted, tmp_path):
    output = tmp_path / "out.en"
    torchrun = [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", "2", SCRIPT]
    # --standalone: torchrun's rendezvous binds a free port itself.
    translate_file(model_folder[0], source_file[0], output, command=torchrun,
                   env={**os.environ, "PET_STANDALONE": "1"})
    assert output.read_bytes() == uninterrupted


def test_a_line_that_is_not_utf8_is_refused_by_its_number_before_anything_is_written(model_folder, tmp_path,
                                                                                       monkeypatch, capsys):
    source = tmp_path / "source.de"
    source.write_bytes("Ein Hund.\nZwei Männer.\n".encode() + b"Caf\xe9 au lait.\n")
    status, _, err = call_script(cli.translate_main, model_folder[0], "--input", source, "--output",
                                 tmp_path / "out.en", monkeypatch=monkeypatch, capsys=capsys)
    assert status == 2
    assert "source.de: line 3 is not valid UTF-8 (byte 0xe9 at column 4)" in err
    assert not (tmp_path / "out.en").exists()


def test_a_sampled_translation_resumes_to_the_same_sample(model_folder, source_file, tmp_path):
    """Sampling is seeded per window: a window's lines, not where a run resumed (or which process took it), decide
    its sample."""
    folder, path = model_folder[0], source_file[0]
    sample = ["--do_sample", "--seed", "3"]
    translate_file(folder, path, tmp_path / "whole.en", *sample)
    kill_a_run(folder, path, tmp_path / "resumed.en", "window done, not appended", *sample)
    translate_file(folder, path, tmp_path / "resumed.en", *sample)
    assert (tmp_path / "whole.en").read_bytes() == (tmp_path / "resumed.en").read_bytes()


PEAK_MEMORY = """
import resource, sys
from hf_rnn_seq2seq import cli
cli.translate_main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # peak resident memory, KiB
"""


def test_memory_stays_flat_from_20k_to_200k_lines(model_folder, multi30k_dir, tmp_path):
    """Read as a whole, 200k lines (and their tokens) would grow the process by far more than 10%."""
    words = [" ".join(line.split()[:4]) for line in read(multi30k_dir / "train.de.gz", 2000)]
    peaks = {}
    for count in (20_000, 200_000):
        source = tmp_path / f"{count}.de"
        source.write_text("".join(words[i % len(words)] + "\n" for i in range(count)), encoding="utf-8")
        result = subprocess.run(
            [sys.executable, "-c", PEAK_MEMORY, str(model_folder[0]), "--input", str(source), "--output",
             str(tmp_path / f"{count}.en"), "--window", "5000", "--batch_size", "1000", "--num_beams", "1",
             "--max_new_tokens", "1", "--no_progress"],
            capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        assert len((tmp_path / f"{count}.en").read_text(encoding="utf-8").splitlines()) == count
        peaks[count] = int(result.stdout.split()[-1])
    assert peaks[200_000] < 1.1 * peaks[20_000], peaks
