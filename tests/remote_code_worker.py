"""Load saved model folders as remote code and record what they compute, for tests/test_compat_matrix.py.

Run as a script in a fresh interpreter whose transformers may be any release (put its folder first on PYTHONPATH);
importing hf_rnn_seq2seq is blocked, as on a machine that never installed it, so only the files saved beside the
weights can build the model:

    python tests/remote_code_worker.py INPUTS.safetensors OUTPUTS.safetensors FOLDER... [--save-to DIR]

For each folder PARENT/NAME it writes `PARENT/NAME.logits` (a teacher-forced padded batch), `PARENT/NAME.greedy` and
`PARENT/NAME.beam` (the ids of greedy and beam-4 search) and `PARENT/NAME.greedy_attentions` /
`PARENT/NAME.beam_attentions` (the cross-attentions generate returns, one (rows, source length) slice per step);
`--save-to` saves every loaded model again, under this transformers, to DIR/NAME.
"""

import argparse
import importlib.abc
import sys
from pathlib import Path


class BlockPackage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "hf_rnn_seq2seq":
            raise ModuleNotFoundError(name)


sys.meta_path.insert(0, BlockPackage())

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import AutoModelForSeq2SeqLM  # noqa: E402

MAX_NEW_TOKENS = 8


def generated(model, inputs, **settings) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, cross-attentions (steps, rows, S)) from generate with the given settings."""
    out = model.generate(
        inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        max_new_tokens=MAX_NEW_TOKENS,
        do_sample=False,
        output_attentions=True,
        return_dict_in_generate=True,
        **settings,
    )
    # One tuple per step, one (rows, heads=1, 1, S) tensor per layer (one attention layer).
    attentions = torch.stack([step[0][:, 0, -1] for step in out.cross_attentions])
    return out.sequences, attentions


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("inputs")
    parser.add_argument("outputs")
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--save-to", type=Path)
    args = parser.parse_args()

    inputs = load_file(args.inputs)
    results = {}
    for folder in args.folders:
        label = f"{folder.parent.name}/{folder.name}"
        model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True).eval()
        if not type(model).__module__.startswith("transformers_modules"):
            raise SystemExit(f"{folder} was not loaded as remote code: {type(model).__module__}")
        with torch.no_grad():  # as in the reference: CPU kernels differ with autograd on
            results[f"{label}.logits"] = model(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                decoder_input_ids=inputs["decoder_input_ids"],
            ).logits
            for name, settings in {"greedy": {"num_beams": 1}, "beam": {"num_beams": 4}}.items():
                ids, attentions = generated(model, inputs, **settings)
                results[f"{label}.{name}"] = ids
                results[f"{label}.{name}_attentions"] = attentions
        if args.save_to is not None:
            model.save_pretrained(args.save_to / folder.name)
    metadata = {"transformers": transformers.__version__, "hf_rnn_seq2seq_loaded": str("hf_rnn_seq2seq" in sys.modules)}
    save_file({key: value.contiguous() for key, value in results.items()}, args.outputs, metadata=metadata)


if __name__ == "__main__":
    main()
