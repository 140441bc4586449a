"""Run under torchrun by test_trainer: fine-tune with env_type="pytorchDDP" (gloo on CPU) and
report this rank's final weights digest in <out>/rank<R>.txt (the test's own file; the
Trainer itself writes only from rank 0)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from trainer_helpers import collate_with, sentences, weights_digest  # noqa: E402

from hubloader import AutoLoader  # noqa: E402
from hubloader.training.trainer import Trainer, accuracy_metric  # noqa: E402


def main() -> None:
    base, out = Path(sys.argv[1]), Path(sys.argv[2])
    loader = AutoLoader("text-classification", model_name=str(base), num_labels=2)
    model, tok = loader.get_model(), loader.get_tokenizer()
    trainer = Trainer(env_type="pytorchDDP", epochs=2, batch_size=4, lr=1e-2, warm_up=0.0,
                      save_dir=out / "ckpt", seed=0, log_interval=5, progress=False)
    state = trainer.train(model, train_dataset=sentences(160, seed=1),
                          valid_dataset=sentences(64, seed=2), collate_fn=collate_with(tok),
                          metric_methods=[["acc", accuracy_metric]])
    rank = os.environ["RANK"]
    (out / f"rank{rank}.txt").write_text(
        f"{weights_digest(model)} {state.global_step} {state.history[-1]['acc']}\n")


if __name__ == "__main__":
    main()
