"""Train a GRU translation model (default: Multi30k German->English). See hf_rnn_seq2seq/training.py."""

from hf_rnn_seq2seq.cli import train_main

if __name__ == "__main__":
    train_main()
