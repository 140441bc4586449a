"""The task table's vocabulary: canonical task names (the Hugging Face pipeline names where
one exists) and their aliases (FlagAI's names and common synonyms).

An alias may stand for several canonical tasks ("classification" is text classification for
BERT and image classification for ViT); the registry picks the one the model family serves.
"""

from __future__ import annotations

import difflib

__all__ = ["TASKS", "canonical_tasks", "all_task_names", "close_task_names"]

# canonical name -> aliases
TASKS: dict[str, tuple[str, ...]] = {
    "base": ("backbone", "model"),
    "text-classification": ("classification", "cls", "semantic-matching",
                            "sequence-classification", "sentiment-analysis"),
    "token-classification": ("ner", "sequence-labeling"),
    "token-classification-crf": ("ner-crf", "sequence-labeling-crf"),
    "token-classification-gp": ("ner-gp", "sequence-labeling-gp", "global-pointer"),
    "fill-mask": ("masklm", "mlm", "masked-lm"),
    "feature-extraction": ("embedding", "sentence-embedding", "sentence-similarity"),
    "text-generation": ("lm", "causal-lm", "poetry-generation"),
    "text2text-generation": ("seq2seq", "title-generation", "poetry", "summarization",
                             "translation"),
    "multiple-choice": ("multi-token-cloze", "cloze"),
    "image-classification": ("classification",),
    "image-feature-extraction": ("vision-backbone",),
    "zero-shot-image-classification": ("txt-img-matching", "image-text-matching"),
}


def _norm(task: str) -> str:
    if not isinstance(task, str):
        from .errors import UnknownTaskError

        raise UnknownTaskError(f"a task is a name such as 'embedding' or 'text-classification', "
                               f"got {task!r} ({type(task).__name__})")
    return task.strip().lower().replace("_", "-").replace(" ", "-")


def canonical_tasks(task: str) -> list[str]:
    """All canonical tasks ``task`` may stand for (empty if it is unknown)."""
    t = _norm(task)
    return [c for c, aliases in TASKS.items() if t == c or t in aliases]


def all_task_names() -> list[str]:
    names = set(TASKS)
    for aliases in TASKS.values():
        names.update(aliases)
    return sorted(names)


def close_task_names(task: str, n: int = 3) -> list[str]:
    return difflib.get_close_matches(_norm(task), all_task_names(), n=n, cutoff=0.5)
