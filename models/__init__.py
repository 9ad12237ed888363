"""expq's learning core: tasks, user data, MLP and RNN networks, the SGD training loop.

This package file stays torch-free: the CLI imports models.spec, models.registry and
models.jsonl at submit time and must never pay for importing torch.
"""
