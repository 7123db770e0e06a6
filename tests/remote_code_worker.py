"""Load saved model folders as remote code and record what they compute (tests/test_compat_matrix.py,
tests/test_checkpoints.py).

Run as a script in a fresh interpreter whose transformers may be any release (put its folder first on PYTHONPATH);
importing hf_rnn_seq2seq is blocked, as on a machine that never installed it, so only the files saved beside the
weights can build the model:

    python tests/remote_code_worker.py INPUTS.safetensors OUTPUTS.safetensors FOLDER... [--save-to DIR]

For each folder PARENT/NAME it writes `PARENT/NAME.QUANTITY` for every quantity of `outputs_of`; `--save-to` saves
every loaded model again, under this transformers, to DIR/NAME. The tests compute their reference with the same
`outputs_of` (importing this module changes nothing: the package is blocked only when it runs as a script).
"""

import argparse
import importlib.abc
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

MAX_NEW_TOKENS = 8


def generated(model, inputs, **settings) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(ids, cross-attentions (steps, rows, S), None for a model without attention) from generate."""
    out = model.generate(
        inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        max_new_tokens=MAX_NEW_TOKENS,
        do_sample=False,
        output_attentions=True,
        return_dict_in_generate=True,
        **settings,
    )
    # One tuple per step, one (rows, heads=1, 1, S) tensor per layer (one attention layer); None without attention.
    if out.cross_attentions is None or out.cross_attentions[0] is None:
        return out.sequences, None
    return out.sequences, torch.stack([step[0][:, 0, -1] for step in out.cross_attentions])


def outputs_of(model, base, inputs) -> dict[str, torch.Tensor]:
    """logits (a teacher-forced padded batch), base (the base model's attentional vectors), greedy / beam (the ids of
    greedy and beam-4 search) and, for a model with attention, greedy_attentions / beam_attentions (the
    cross-attentions generate returns)."""
    teacher_forced = {key: inputs[key] for key in ("input_ids", "attention_mask", "decoder_input_ids")}
    with torch.no_grad():  # as everywhere here: CPU kernels differ with autograd on
        outputs = {
            "logits": model(**teacher_forced).logits,
            "base": base(**teacher_forced).last_hidden_state,
        }
        for name, beams in (("greedy", 1), ("beam", 4)):
            outputs[name], attentions = generated(model, inputs, num_beams=beams)
            if attentions is not None:
                outputs[f"{name}_attentions"] = attentions
    return outputs


class BlockPackage(importlib.abc.MetaPathFinder):
    """Makes importing hf_rnn_seq2seq fail (also used by tests/helpers.py's WITHOUT_PACKAGE)."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "hf_rnn_seq2seq":
            raise ModuleNotFoundError(name)


def main():
    sys.meta_path.insert(0, BlockPackage())  # before any model code is loaded
    import transformers
    from transformers import AutoModel, AutoModelForSeq2SeqLM

    parser = argparse.ArgumentParser()
    parser.add_argument("inputs")
    parser.add_argument("outputs")
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--save-to", type=Path)
    args = parser.parse_args()

    inputs = load_file(args.inputs)
    results = {}
    for folder in args.folders:
        model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True).eval()
        base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        for loaded in (model, base):
            if not type(loaded).__module__.startswith("transformers_modules"):
                raise SystemExit(f"{folder} was not loaded as remote code: {type(loaded).__module__}")
        label = f"{folder.parent.name}/{folder.name}"
        results.update({f"{label}.{name}": value for name, value in outputs_of(model, base, inputs).items()})
        if args.save_to is not None:
            model.save_pretrained(args.save_to / folder.name)
    metadata = {"transformers": transformers.__version__, "hf_rnn_seq2seq_loaded": str("hf_rnn_seq2seq" in sys.modules)}
    save_file({key: value.contiguous() for key, value in results.items()}, args.outputs, metadata=metadata)


if __name__ == "__main__":
    main()
