"""torch.hub entry points: ``torch.hub.load(repo_dir, "model", "bert-base-en", source="local")``
and ``torch.hub.load(repo_dir, "tokenizer", "bert-base-en", source="local")`` from a clone of
this repository (or ``torch.hub.load("<owner>/hubloader", ...)`` once published).

Each entry is a thin call into hubloader, so a name goes through its cards, its verified cache
and its offline lookup exactly as ``BaseModel.from_pretrain`` does.
"""

dependencies = ["torch", "safetensors", "tokenizers", "huggingface_hub", "yaml", "filelock"]


def model(name, **kwargs):
    """The pretrained model ``name`` (a card name, a directory or a URI), in eval mode.

    Keyword arguments are :meth:`hubloader.BaseModel.from_pretrain`'s (``revision``,
    ``offline``, ``device``, ``torch_dtype``/``dtype``, ``device_map``, config overrides...).

    Example:
        >>> m = torch.hub.load("path/to/hubloader", "model", "bert-base-en", source="local")
    """
    from hubloader import BaseModel

    return BaseModel.from_pretrain(name, **kwargs)


def tokenizer(name, **kwargs):
    """The tokenizer of model ``name`` (only its tokenizer and config files are fetched).

    Example:
        >>> tok = torch.hub.load("path/to/hubloader", "tokenizer", "bert-base-en", source="local")
    """
    from hubloader import AutoTokenizer

    return AutoTokenizer.from_pretrained(name, **kwargs)
