"""Reproducibility of train.py, and a run killed with SIGKILL mid-epoch that resumes to the very same model.

Every run is a train.py subprocess on 400 real Multi30k pairs with the tiny model of test_train (dropout left at
its default 0.3, so the resumed run must restore the RNG state; length-grouped batches, so the data order depends
on the seed). 400 pairs in batches of 32 are 13 steps an epoch; 2 epochs are 26 steps, with a checkpoint every
4 steps: 4, 8, 12 (first epoch), 16, 20, 24 (second epoch) and 26, none of them at an epoch boundary.

The killed run is killed at one chosen point however fast or slow the machine is: it is train.py's own main() with
one training step wrapped, which, in step KILLED_IN_STEP (after checkpoint-4 and one more whole step, its gradients
computed but not yet applied), tells the test so through a pipe and waits there for the SIGKILL.
"""

import math
import os
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_rnn_seq2seq.checkpoints import is_complete
from helpers import TINY, read_json, train

TRAIN_PAIRS = 400
BATCH_SIZE = int(TINY[TINY.index("--per_device_train_batch_size") + 1])
STEPS_PER_EPOCH = math.ceil(TRAIN_PAIRS / BATCH_SIZE)  # 13
EPOCHS = 2
MAX_STEPS = EPOCHS * STEPS_PER_EPOCH  # 26
SAVE_STEPS = 4
TOKENS_PER_BATCH = 1000  # about as many batches as 32 pairs a batch make
assert all(step % STEPS_PER_EPOCH for step in range(SAVE_STEPS, MAX_STEPS, SAVE_STEPS)), "a checkpoint at an epoch end"
KILLED_IN_STEP = SAVE_STEPS + 2  # step 5 trained after checkpoint-4 and lost; step 6 killed between backward and update
assert KILLED_IN_STEP < min(2 * SAVE_STEPS, STEPS_PER_EPOCH)  # before the second checkpoint, in the first epoch

ARGS = [
    *TINY, "--do_train", "--eval_strategy", "no", "--num_train_epochs", str(EPOCHS), "--logging_steps", "1",
    "--save_strategy", "steps", "--save_steps", str(SAVE_STEPS),
]  # fmt: skip
assert "--dropout" not in ARGS and "--train_sampling_strategy" not in ARGS  # the defaults are what is tested


@pytest.fixture(scope="module")
def data_dir(multi30k_slice):
    return multi30k_slice(train=TRAIN_PAIRS, validation=24, test=24)


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
    """An uninterrupted run with ARGS: the folder every other run is compared with."""
    out = tmp_path_factory.mktemp("reference") / "run"
    train(["--data_dir", str(data_dir), "--output_dir", str(out), *ARGS], cwd=out.parent)
    assert read_json(out / "trainer_state.json")["global_step"] == MAX_STEPS
    return out


def weights(folder):
    return load_file(Path(folder) / "model.safetensors")


def assert_identical_weights(folder, expected_folder):
    tensors, expected = weights(folder), weights(expected_folder)
    assert sorted(tensors) == sorted(expected)
    differing = {
        name: (tensors[name] - expected[name]).abs().max().item()
        for name in expected
        if not torch.equal(tensors[name], expected[name])
    }
    assert not differing, f"largest absolute difference per differing tensor: {differing}"


def logged_steps(state):
    """{step: log entry} of the per-step training losses (with --logging_steps 1: every step)."""
    return {entry["step"]: entry for entry in state["log_history"] if "loss" in entry}


def complete_checkpoints(output_dir):
    """Steps of the checkpoints whose save finished (the package's own check, which reads only)."""
    return sorted(int(path.name.split("-")[1]) for path in Path(output_dir).glob("checkpoint-*") if is_complete(path))


def test_same_seed_gives_identical_weights(data_dir, reference, tmp_path):
    out = tmp_path / "again"
    train(["--data_dir", str(data_dir), "--output_dir", str(out), *ARGS], cwd=tmp_path)

    assert_identical_weights(out, reference)
    log, expected_log = (logged_steps(read_json(folder / "trainer_state.json")) for folder in (out, reference))
    assert log == expected_log
    # Not a vacuous comparison: the weights did move during the last two steps.
    last_checkpoint = weights(reference / f"checkpoint-{MAX_STEPS - MAX_STEPS % SAVE_STEPS}")
    assert any(not torch.equal(tensor, last_checkpoint[name]) for name, tensor in weights(reference).items())


# train.py's main() with TranslationTrainer.training_step wrapped: in step KILLED_IN_STEP, once its forward and backward
# pass are done, it writes "paused" to the pipe it was given and waits for ever (here: for the SIGKILL).
PAUSING_TRAIN_PY = """
import os, sys, threading
from hf_rnn_seq2seq.trainer import TranslationTrainer
from hf_rnn_seq2seq.training import main

ready_fd, pause_in_step, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
training_step = TranslationTrainer.training_step

def pausing_training_step(self, *args, **kwargs):
    loss = training_step(self, *args, **kwargs)
    if self.state.global_step + 1 == pause_in_step:  # global_step counts the steps already applied
        os.write(ready_fd, b"paused\\n")
        threading.Event().wait()
    return loss

TranslationTrainer.training_step = pausing_training_step
main(argv)
"""


def kill_mid_step(data_dir, out, args, tmp_path):
    """Start train.py with `args`, wait until it is inside step KILLED_IN_STEP (checkpoint-SAVE_STEPS saved, the steps
    after it not), then SIGKILL it there."""
    log_path = tmp_path / "killed.log"
    ready_read, ready_write = os.pipe()
    try:
        with open(log_path, "w", encoding="utf-8") as log:
            process = subprocess.Popen(
                [sys.executable, "-c", PAUSING_TRAIN_PY, str(ready_write), str(KILLED_IN_STEP), "--data_dir",
                 str(data_dir), "--output_dir", str(out), *args],
                cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=dict(os.environ),
                pass_fds=(ready_write,),
            )  # fmt: skip
        os.close(ready_write)  # the child holds the only write end: its exit ends the read below
        ready_write = None
        try:
            # Blocks until the child writes, or exits (end of file); the limit only turns a hung child into a failure.
            readable, _, _ = select.select([ready_read], [], [], 600)
            message = os.read(ready_read, 64) if readable else b""
            if message != b"paused\n":
                pytest.fail(f"train.py never reached step {KILLED_IN_STEP} (exit status {process.poll()}):\n"
                            + log_path.read_text(encoding="utf-8")[-6000:])
            os.kill(process.pid, signal.SIGKILL)
            returncode = process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    finally:
        os.close(ready_read)
        if ready_write is not None:
            os.close(ready_write)
    assert returncode == -signal.SIGKILL
    assert not (out / "model.safetensors").exists()  # the final save never happened


def resume_and_compare(data_dir, out, args, reference, steps_per_epoch, tmp_path):
    """`--resume_from_checkpoint last` on the killed run's folder ends exactly as the uninterrupted `reference`."""
    # The checkpoint `--resume_from_checkpoint last` resumes: the newest complete one, the only one the killed run
    # saved. It lies inside the first epoch, so that the resumed run crosses an epoch end.
    assert sorted(path.name for path in out.glob("checkpoint-*")) == [f"checkpoint-{SAVE_STEPS}"]
    assert complete_checkpoints(out) == [SAVE_STEPS]
    resumed_from = SAVE_STEPS
    assert resumed_from < KILLED_IN_STEP < steps_per_epoch  # steps trained after the checkpoint are lost; mid-epoch
    checkpoint_state = read_json(out / f"checkpoint-{resumed_from}" / "trainer_state.json")  # rotated away later
    assert checkpoint_state["global_step"] == resumed_from

    train(["--data_dir", str(data_dir), "--output_dir", str(out), *args, "--resume_from_checkpoint", "last"],
          cwd=tmp_path)

    state, expected_state = read_json(out / "trainer_state.json"), read_json(reference / "trainer_state.json")
    max_steps = expected_state["global_step"]
    assert state["global_step"] == max_steps
    log, expected_log = logged_steps(state), logged_steps(expected_state)
    assert sorted(log) == list(range(1, max_steps + 1))
    # Steps up to the checkpoint were carried over from it, not trained again...
    assert {step: log[step] for step in range(1, resumed_from + 1)} == logged_steps(checkpoint_state)
    # ...and the resumed process trained exactly the remaining steps: its summed loss is theirs. The Trainer divides
    # that sum by the steps of this train() call (transformers 5.23 on) or by the global step (earlier releases).
    remaining = range(resumed_from + 1, max_steps + 1)
    summed = sum(expected_log[step]["loss"] for step in remaining)
    train_loss = read_json(out / "train_results.json")["train_loss"]
    divisors = (len(remaining), max_steps)
    assert train_loss in [pytest.approx(summed / divisor, rel=1e-12) for divisor in divisors], (train_loss, summed)
    # Same batches in the same order, same dropout masks, same optimizer and scheduler state as the uninterrupted
    # run: every loss, gradient norm and learning rate after the resume point is equal, across the epoch end.
    assert {step: log[step] for step in remaining} == {step: expected_log[step] for step in remaining}
    assert_identical_weights(out, reference)


def test_kill_9_mid_epoch_then_resume_matches_an_uninterrupted_run(data_dir, reference, tmp_path):
    out = tmp_path / "killed"
    kill_mid_step(data_dir, out, ARGS, tmp_path)
    resume_and_compare(data_dir, out, ARGS, reference, STEPS_PER_EPOCH, tmp_path)


def test_token_batches_resume_after_kill_9_to_the_very_same_model(data_dir, tmp_path):
    """Batches by tokens (`--max_tokens_per_batch`): the same batches in the same order after the resume."""
    args = [*ARGS, "--max_tokens_per_batch", str(TOKENS_PER_BATCH)]
    reference = tmp_path / "reference"
    train(["--data_dir", str(data_dir), "--output_dir", str(reference), *args], cwd=tmp_path)
    steps_per_epoch, remainder = divmod(read_json(reference / "trainer_state.json")["global_step"], EPOCHS)
    assert remainder == 0 and KILLED_IN_STEP < steps_per_epoch and steps_per_epoch % SAVE_STEPS, steps_per_epoch
    out = tmp_path / "killed"
    kill_mid_step(data_dir, out, args, tmp_path)
    resume_and_compare(data_dir, out, args, reference, steps_per_epoch, tmp_path)


# transformers' LengthGroupedSampler (--train_sampling_strategy group_by_length, the default) shuffles with the
# global torch RNG, so a run resumed in a later epoch drew that epoch's order right after set_seed (the first epoch's
# order): measured, losses differed from the first step after the resume and weights by up to 6e-3.
# trainer.EpochSeededLengthGroupedSampler draws each epoch's order from (seed, epoch) alone; this test holds it.
def test_resume_in_a_later_epoch_keeps_the_data_order(data_dir, reference, tmp_path):
    checkpoint = MAX_STEPS - MAX_STEPS % SAVE_STEPS  # 24: step 11 of 13 in the second epoch
    assert checkpoint > STEPS_PER_EPOCH and checkpoint % STEPS_PER_EPOCH
    out = tmp_path / "resumed"
    out.mkdir()
    shutil.copytree(reference / f"checkpoint-{checkpoint}", out / f"checkpoint-{checkpoint}")
    train(["--data_dir", str(data_dir), "--output_dir", str(out), *ARGS, "--resume_from_checkpoint", "last"],
          cwd=tmp_path)

    log, expected_log = (logged_steps(read_json(folder / "trainer_state.json")) for folder in (out, reference))
    assert log == expected_log
    assert_identical_weights(out, reference)
