"""Evaluation: the reference scores (score.py semantics), the evaluation loop and its
checkpoints, layer parity, the paper's published numbers and the reports beside them."""
