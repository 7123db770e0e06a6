"""The attention demo's speed as a visitor meets it: seconds from `hf-rnn-seq2seq-demo MODEL` to a page that answers,
and the time one translation request takes through the app's API (what the page's Translate button calls: the same
handler, queue and HTTP round trip), with beam 5, over sentences of the test set.

    python benchmarks/demo_speed.py                       # the default model; writes benchmarks/results/demo_speed.md
    python benchmarks/demo_speed.py --model runs/other --sentences 20 --out /tmp/demo_speed.md

Run it alone: another job on the machine slows both.
"""

import argparse
import gzip
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from common import REPO, add_corpus_argument, emit


LOCAL_URL = re.compile(r"Running on local URL:\s+(https?://\S+?)/?\s*$")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(model: str) -> tuple[subprocess.Popen, str, float]:
    """Start the console script; return it, its URL and the seconds until its page answered. No port is chosen for
    it: Gradio binds the first port it can from GRADIO_SERVER_PORT on (one free a moment ago) and prints its URL."""
    script = Path(sys.executable).with_name("hf-rnn-seq2seq-demo")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_SERVER_PORT": str(free_port()), "PYTHONUNBUFFERED": "1"}
    began = time.perf_counter()
    server = subprocess.Popen([str(script), model], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, text=True, env=env)  # fmt: skip
    output = []
    for line in server.stdout:
        output.append(line)
        if match := LOCAL_URL.search(line):
            url = match.group(1) + "/"
            break
    else:
        raise SystemExit(f"hf-rnn-seq2seq-demo {model} exited with {server.wait()}:\n{''.join(output)[-4000:]}")
    threading.Thread(target=server.stdout.read, daemon=True).start()  # the rest of its output, unread
    urllib.request.urlopen(url)  # it listens: this waits for the page, it does not retry
    return server, url, time.perf_counter() - began


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/multi30k-de-en")
    add_corpus_argument(parser)
    parser.add_argument("--source_lang", default="de")
    parser.add_argument("--starts", type=int, default=3, help="cold starts to time (the median is reported)")
    parser.add_argument("--sentences", type=int, default=100, help="test sentences to translate, one request each")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "demo_speed.md"))
    args = parser.parse_args()
    from gradio_client import Client

    with gzip.open(Path(args.data_dir) / f"test_2016_flickr.{args.source_lang}.gz", "rt", encoding="utf-8") as f:
        sentences = [line.strip() for _, line in zip(range(args.sentences), f)]
    start_seconds = []
    for _ in range(args.starts):
        server, url, seconds = start(args.model)
        start_seconds.append(seconds)
        server.terminate()
        server.wait()
    server, url, _ = start(args.model)
    try:
        client = Client(url, verbose=False)
        settings = ("beam search", 5, 1.0, 1.0, 1.0, 1, 0)
        client.predict(args.model, sentences[0], *settings, api_name="/translate")  # warm-up
        latencies = []
        for sentence in sentences:
            began = time.perf_counter()
            status, *_ = client.predict(args.model, sentence, *settings, api_name="/translate")
            latencies.append(time.perf_counter() - began)
            if not status.startswith("Translated"):
                raise SystemExit(f"the demo refused {sentence!r}: {status}")
    finally:
        server.terminate()
        server.wait()
    latencies.sort()
    command = "python benchmarks/demo_speed.py"
    if args.model != parser.get_default("model"):
        command += f" --model {args.model}"
    emit(
        [
            f"# The attention demo's speed (`{command}`, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores)",
            "",
            f"| model | start to a serving page (s, median of {args.starts}) | translation request, beam 5: median (s) "
            "| 90th percentile (s) | slowest (s) | sentences |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            f"| `{args.model}` | {statistics.median(start_seconds):.1f} | {statistics.median(latencies):.3f} | "
            f"{latencies[int(0.9 * (len(latencies) - 1))]:.3f} | {latencies[-1]:.3f} | {len(latencies)} |",
            "",
            f"Start: from launching `hf-rnn-seq2seq-demo {args.model}` (a new process: imports, loading the model) to "
            "the first answered request for its page. A request: one call of the page's translate handler through "
            "its HTTP API (`gradio_client`), the first test sentences of the corpus one at a time, each returning "
            "the hypotheses, the heatmap's HTML and the token choices; after one warm-up request.",
        ],
        args.out,
    )


if __name__ == "__main__":
    main()
