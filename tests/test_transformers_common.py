"""transformers' own shared model tests (`ModelTesterMixin`, `ConfigTester`) run against our model.

The shared test files come from the source distribution on PyPI of the transformers release constraints.txt pins,
downloaded by the setup step (`pip download --no-deps --no-binary :all: transformers==X -d .cache/transformers-sdist`,
see `.ci/run`), and
are extracted at import time into a temporary package; they are not copied into this repository. Without the sdist,
or with another installed transformers version, this module fails at collection and says why. The sdist ships only
the top-level test files (tests/*.py), so the three modules they import from elsewhere in transformers' test tree
are replaced by minimal stand-ins: an empty `GenerationTesterMixin` (tests/generation/test_utils.py is not shipped,
so the generation mixin cannot run; generate() is tested against reference computations in test_modeling.py), an
empty `ExportTesterMixin` (tests/exporters/test_export.py, not shipped) and `config_common_kwargs`
(tests/utils/test_configuration_utils.py, copied below: a non-default value for every field `PreTrainedConfig`
declares).
"""

import atexit
import importlib
import os
import re
import shutil
import sys
import tarfile
import tempfile
import textwrap
import unittest
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file

from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration, RNNSeq2SeqModel
from helpers import pinned_versions

VERSION = pinned_versions()["transformers"]  # the sdist .ci/run fetches
SDIST = Path(__file__).resolve().parents[1] / ".cache" / "transformers-sdist" / f"transformers-{VERSION}.tar.gz"
SHARED = ("test_modeling_common.py", "test_configuration_common.py")
STAND_INS = {
    "exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    "generation/test_utils.py": "class GenerationTesterMixin:\n    pass\n",
    # As in transformers' tests/utils/test_configuration_utils.py (v5 main; not in the sdist): the public settings of
    # PreTrainedConfig (the same from 5.23.0 to 5.25.0), each with a non-default value.
    "utils/test_configuration_utils.py": textwrap.dedent(
        """
        config_common_kwargs = {
            "return_dict": False,
            "output_hidden_states": True,
            "output_attentions": True,
            "dtype": "float16",
            "chunk_size_feed_forward": 5,
            "architectures": ["BertModel"],
            "id2label": {0: "label"},
            "label2id": {"label": "0"},
            "problem_type": "regression",
        }
        """
    ),
}


def _import_shared_tests():
    if transformers.__version__ != VERSION:
        raise RuntimeError(f"the shared tests are those of transformers {VERSION}, installed is {transformers.__version__}")
    if not SDIST.exists():
        raise RuntimeError(
            f"{SDIST} is missing: run `pip download --no-deps --no-binary :all: transformers=={VERSION} "
            f"-d {SDIST.parent}` (the setup step in .ci/run) to get transformers' shared test files"
        )
    root = Path(tempfile.mkdtemp(prefix="transformers_shared_tests_"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    package = root / "transformers_shared_tests"
    with tarfile.open(SDIST) as archive:
        for name in SHARED:
            member = archive.getmember(f"transformers-{VERSION}/tests/{name}")
            (package / name).parent.mkdir(parents=True, exist_ok=True)
            (package / name).write_bytes(archive.extractfile(member).read())
    for name, text in STAND_INS.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    for folder in (package, *{(package / name).parent for name in STAND_INS}):
        (folder / "__init__.py").touch()
    sys.path.insert(0, str(root))
    modeling = importlib.import_module("transformers_shared_tests.test_modeling_common")
    configuration = importlib.import_module("transformers_shared_tests.test_configuration_common")
    return modeling, configuration


_modeling_common, _configuration_common = _import_shared_tests()
ModelTesterMixin, ids_tensor = _modeling_common.ModelTesterMixin, _modeling_common.ids_tensor
ConfigTester = _configuration_common.ConfigTester
# The shared tests recognise base models, LM heads and how to build labels by transformers' own name mappings; a
# library model is listed there, ours is registered from outside, so add it to the mappings they read.
_modeling_common.MODEL_MAPPING_NAMES = {**_modeling_common.MODEL_MAPPING_NAMES, "rnn_seq2seq": "RNNSeq2SeqModel"}
_modeling_common.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES = {
    **_modeling_common.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    "rnn_seq2seq": "RNNSeq2SeqForConditionalGeneration",
}


class RNNSeq2SeqModelTester:
    def __init__(self, parent, variant, batch_size=3, seq_length=7, vocab_size=50, is_training=True):
        self.parent = parent
        self.variant = variant
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.encoder_seq_length = seq_length
        self.vocab_size = vocab_size
        self.is_training = is_training
        self.hidden_size = 16
        self.num_hidden_layers = 2

    def get_config(self):
        # Embeddings, encoder states (2 directions x 8) and decoder states all 16 wide, as the shared
        # hidden-states test expects one width for every layer.
        return RNNSeq2SeqConfig(
            vocab_size=self.vocab_size,
            embedding_dim=self.hidden_size,
            hidden_size=self.hidden_size,
            encoder_hidden_size=self.hidden_size // 2,
            num_encoder_layers=self.num_hidden_layers,
            num_decoder_layers=self.num_hidden_layers,
            dropout=0.1,
            **self.variant,
        )

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size - 3) + 3
        attention_mask = torch.ones_like(input_ids)
        attention_mask[0, -2:] = 0  # one padded row, right-padded as the encoder requires
        decoder_input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size - 3) + 3
        inputs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "decoder_input_ids": decoder_input_ids,
            "decoder_attention_mask": torch.ones_like(decoder_input_ids),
        }
        return config, inputs


class RNNSeq2SeqModelTest(ModelTesterMixin, unittest.TestCase):
    """The step-by-step path: Bahdanau attention with input feeding, GRU cells."""

    variant = {"attention_type": "bahdanau", "input_feeding": True}
    all_model_classes = (RNNSeq2SeqModel, RNNSeq2SeqForConditionalGeneration)
    is_encoder_decoder = True
    # The model returns attention weights (cross-attention, one layer, one head), so the shared tests that can check
    # them (e.g. tuple/dict output equivalence with output_attentions) run; only self-attention maps are absent.
    has_attentions = True
    # test_can_init_all_missing_weights dates a model by a "# Copyright YYYY" line atop its config file and skips those
    # before 2023 unless this is set; ours has no such line, and `_init_weights` must cover every weight, so opt in.
    test_can_init_all_missing_weights_before_2023 = True

    def setUp(self):
        self.model_tester = RNNSeq2SeqModelTester(self, self.variant)
        # No `num_attention_heads` among the common properties: a recurrent model has no attention heads.
        self.config_tester = ConfigTester(
            self,
            config_class=RNNSeq2SeqConfig,
            common_properties=["vocab_size", "hidden_size", "num_encoder_layers", "num_decoder_layers"],
            vocab_size=50,
            hidden_size=16,
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    @unittest.skip(reason="checks per-layer, per-head encoder and decoder self-attention maps; an RNN has no self-attention")
    def test_attention_outputs(self):
        pass

    @unittest.skip(reason="GenerationTesterMixin (tests/generation/test_utils.py) is not in the sdist, so it cannot be mixed in")
    def test_generation_tester_mixin_inheritance(self):
        pass

    def test_retain_grad_hidden_states_attentions(self):
        # The shared test also retains the gradient of the first encoder and decoder self-attention map, which an RNN
        # does not have: run it unchanged on its path for models without attention maps (the hidden states).
        self.has_attentions = False
        try:
            super().test_retain_grad_hidden_states_attentions()
        finally:
            del self.has_attentions

    def test_model_weights_reload_no_missing_tied_weights(self):
        # The shared test loads a checkpoint whose tensors were all removed and checks that exactly the model's
        # parameters are reported missing. Our from_pretrained refuses such a checkpoint of its own class instead
        # of initialising it randomly, so the same check runs on the tensors its error names.
        for model_class in self.all_model_classes:
            config, _ = self.model_tester.prepare_config_and_inputs_for_common()
            model = model_class(config)
            with tempfile.TemporaryDirectory() as folder:
                model.save_pretrained(folder)
                save_file({"tensor": torch.tensor([1, 2])}, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
                with self.assertRaises(ValueError) as refused:
                    model_class.from_pretrained(folder)
            named = set(re.findall(r"missing: ([\w.]+)", str(refused.exception)))
            self.assertEqual(named, {name for name, _ in model.named_parameters(remove_duplicate=False)})


class RNNSeq2SeqParallelLSTMModelTest(RNNSeq2SeqModelTest):
    """The fused teacher-forcing path (Luong attention, no input feeding), with LSTM cells."""

    variant = {"attention_type": "luong_general", "input_feeding": False, "rnn_type": "lstm"}


class RNNSeq2SeqConditionalGRUModelTest(RNNSeq2SeqModelTest):
    """The conditional-GRU decoder with the deep output and the mean bridge (Marian's s2s, Nematus)."""

    variant = {"attention_type": "bahdanau", "decoder_type": "cgru", "deep_output": True, "decoder_init": "mean_bridge"}


class RNNSeq2SeqMarianLayerNormModelTest(RNNSeq2SeqModelTest):
    """The conditional GRU as imported Marian models have it: layer normalisation, each encoder direction a stack of
    its own, a zero first decoder input."""

    variant = {
        "attention_type": "bahdanau", "decoder_type": "cgru", "deep_output": True, "decoder_init": "mean_bridge",
        "layer_norm": True, "attention_query_bias": False, "encoder_stacking": "per_direction",
        "zero_start_embedding": True,
    }  # fmt: skip
