"""The attention demo as a Hugging Face Space runs it (`python app.py`): the models are the space-separated folders or
Hub ids in DEMO_MODELS (default: the model `python train.py` writes), the example sentences the lines of the file
DEMO_EXAMPLES (default: a few Multi30k-style German sentences, for the default German→English model)."""

import os

from hf_rnn_seq2seq.demo import launch, read_examples

DEFAULT_EXAMPLES = [
    "Ein Mann mit einem orangefarbenen Hut starrt auf etwas.",
    "Zwei Hunde spielen im Schnee.",
    "Eine Frau in einem roten Kleid fährt Fahrrad auf einer belebten Straße in der Stadt.",
]

if __name__ == "__main__":
    models = os.environ.get("DEMO_MODELS", "runs/multi30k-de-en").split()
    examples = read_examples(os.environ["DEMO_EXAMPLES"]) if "DEMO_EXAMPLES" in os.environ else DEFAULT_EXAMPLES
    launch(models, examples)  # host and port: GRADIO_SERVER_NAME and GRADIO_SERVER_PORT, which Spaces set
