"""Training: one trainer lifecycle (trainer_base) for the token model (train) and the codec (codec_train), checkpoints,
exact resume, locks, loggers, the checks before a run.
"""
