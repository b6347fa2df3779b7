"""Training: the DeepSpeed loop for pretraining and FlexiDiT distillation (``engine.train``), its config checks,
deterministic batches, losses, EMA, monitoring and atomic checkpoints / exports."""
