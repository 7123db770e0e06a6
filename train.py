"""Train a translation model (default: a GRU with Luong attention on Multi30k German->English). See
hf_rnn_seq2seq/training.py; installed, the same is `hf-rnn-seq2seq-train`."""

from hf_rnn_seq2seq.cli import train_main

if __name__ == "__main__":
    train_main()
