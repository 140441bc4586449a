"""Fine-tuning: the ``Trainer`` and the checkpoints it writes and resumes from.
"""
