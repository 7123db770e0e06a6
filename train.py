"""Train a GRU translation model (default: Multi30k German->English). See hf_rnn_seq2seq/training.py."""

from hf_rnn_seq2seq.training import main

if __name__ == "__main__":
    main()
