"""``hubloader run TASK MODEL INPUT``: a quick try of a model from the shell.

INPUT is text, or an image path for vision tasks. The result is printed as plain lines
(``--json`` for one JSON object).

Example:
    $ hubloader run lm gpt2 "Once upon a time" --max-new-tokens 20
    $ hubloader run text-generation Qwen2.5-0.5B-Instruct "Name three llamas" --chat
    $ hubloader run classification vit-base-patch16-224 cat.jpg --top-k 3
    $ hubloader run zero-shot-image-classification clip-base-p32-224 --image x.png \
          --labels "a cat,a dog"
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Callable

__all__ = ["register", "run_task"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a model on one input (text, or an image path)")
    p.add_argument("task", help="a task or alias: lm, seq2seq, classification, ner, embedding...")
    p.add_argument("model", help="a card name, model directory or URI")
    p.add_argument("input", nargs="?", default=None,
                   help="the input text, or the path of an image for vision tasks")
    p.add_argument("--image", help="zero-shot-image-classification: the image (or give it as "
                                   "INPUT)")
    p.add_argument("--labels", help="zero-shot-image-classification: candidate labels, "
                                    "comma-separated (\"a cat,a dog\")")
    p.add_argument("--template", default="This is a photo of {}.",
                   help="zero-shot-image-classification: the sentence each label goes in")
    p.add_argument("--model-dir", help="FlagAI's download_path: files in <model-dir>/<model>/")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0... (default: cpu)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="generation length (default 32)")
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=None,
                   help="sampling: keep the k best tokens; classification: labels shown (default 5)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass in (0, 1]")
    p.add_argument("--seed", type=int, default=None, help="seed for sampling")
    p.add_argument("--repetition-penalty", type=float, default=1.0,
                   help="> 1 discourages repeated tokens (default 1: off)")
    p.add_argument("--chat", action="store_true",
                   help="text generation: send the input as a user message through the "
                        "model's chat template")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run)


def _labels(model, ids: list[int]) -> list[str]:
    id2label = getattr(model.config, "id2label", None) or {}
    return [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in ids]


def _generate(loader, text: str, opts: dict[str, Any]) -> dict[str, Any]:
    import torch

    model, tok = loader.get_model(), loader.get_tokenizer()
    if opts.get("chat"):  # the text is the user's turn, rendered by the model's chat template
        text = tok.apply_chat_template([{"role": "user", "content": text}],
                                       add_generation_prompt=True)
        # the template wrote its own BOS, if any
        enc = tok(text, add_special_tokens=False, truncation=True, return_tensors="pt")
    else:
        enc = tok(text, truncation=True, return_tensors="pt")
    gen = None
    if opts.get("seed") is not None:
        gen = torch.Generator(device=model.device).manual_seed(opts["seed"])
    streamer = None
    if opts.get("on_text") is not None:
        from ..text.streaming import TextStreamer

        streamer = TextStreamer(tok, opts["on_text"])
    ids = model.generate(enc["input_ids"].to(model.device),
                         attention_mask=enc["attention_mask"].to(model.device),
                         max_new_tokens=opts["max_new_tokens"], do_sample=opts["sample"],
                         temperature=opts["temperature"], top_k=opts["top_k"],
                         top_p=opts["top_p"], generator=gen, streamer=streamer,
                         repetition_penalty=opts["repetition_penalty"])
    new = ids[0, enc["input_ids"].shape[1]:] if loader.task == "text-generation" else ids[0]
    return {"generated_text": tok.decode(new, skip_special_tokens=True), "token_ids": ids[0].tolist()}


def _text_inputs(loader, text: str) -> tuple[dict, Any]:
    tok = loader.get_tokenizer()
    model = loader.get_model()
    return tok(text, truncation=True, return_tensors="pt").to(model.device), tok


def _model_inputs(loader, text: str) -> dict:
    """An image path through the processor (vision models), else the text through the
    tokenizer; on the model's device."""
    if loader.is_vision:
        return loader.get_processor()(text, device=loader.get_model().device)
    return _text_inputs(loader, text)[0]


def _classify(loader, text: str, opts: dict[str, Any]) -> dict[str, Any]:
    import torch

    model = loader.get_model()
    inputs = _model_inputs(loader, text)
    with torch.no_grad():
        probs = model(**inputs)["logits"][0].float().softmax(-1)
    k = min(opts["top_k"] or 5, probs.shape[-1])
    top = probs.topk(k)
    return {"labels": [{"label": lab, "score": round(float(s), 6)}
                       for lab, s in zip(_labels(model, top.indices.tolist()), top.values)]}


def _tokens(loader, text: str, opts: dict[str, Any]) -> dict[str, Any]:
    import torch

    model = loader.get_model()
    inputs, tok = _text_inputs(loader, text)
    with torch.no_grad():
        pred = model(**inputs)["logits"][0].argmax(-1).tolist()
    ids = inputs["input_ids"][0].tolist()
    return {"tokens": [{"token": tok.backend.id_to_token(i), "label": lab}
                       for i, lab in zip(ids, _labels(model, pred))]}


def _fill_mask(loader, text: str, opts: dict[str, Any]) -> dict[str, Any]:
    import torch

    from ..errors import InputError

    model = loader.get_model()
    inputs, tok = _text_inputs(loader, text)
    mask_id = tok.mask_token_id
    where = [] if mask_id is None else \
        (inputs["input_ids"][0] == mask_id).nonzero().flatten().tolist()
    if not where:
        raise InputError("fill-mask needs a mask token in the input, e.g. 'Paris is the [MASK] "
                         "of France' ('<mask>' for RoBERTa)")
    with torch.no_grad():
        logits = model(**inputs)["logits"][0]
    k = opts["top_k"] or 5
    return {"masks": [[{"token": tok.decode([i]), "score": round(float(s), 6)}
                       for s, i in zip(*logits[pos].float().softmax(-1).topk(k))]
                      for pos in where]}


def _embed(loader, text: str, opts: dict[str, Any]) -> dict[str, Any]:
    import torch

    model = loader.get_model()
    inputs = _model_inputs(loader, text)
    with torch.no_grad():
        out = model(**inputs)
    vec = out.get("embeddings", out.get("pooled", out["logits"]))[0]
    if vec.dim() > 1:  # token states: mean over tokens
        vec = vec.mean(0)
    return {"dim": int(vec.shape[-1]), "embedding": [round(float(x), 6) for x in vec.flatten()]}


def _zero_shot(loader, text: str, opts: dict[str, Any]) -> dict[str, Any]:
    from ..errors import InputError

    labels = [x.strip() for x in (opts.get("labels") or "").split(",") if x.strip()]
    if not labels:
        raise InputError('zero-shot-image-classification needs --labels "a cat,a dog"')
    model = loader.get_model()
    pixels = loader.get_image_processor()(text, device=model.device)["pixel_values"]
    probs = model.zero_shot(pixels, labels, loader.get_tokenizer(),
                            template=opts.get("template") or "This is a photo of {}.")[0]
    order = probs.argsort(descending=True).tolist()
    return {"labels": [{"label": labels[i], "score": round(float(probs[i]), 6)} for i in order]}


_HANDLERS: dict[str, Callable[[Any, str, dict], dict]] = {
    "zero-shot-image-classification": _zero_shot,
    "text-generation": _generate,
    "text2text-generation": _generate,
    "text-classification": _classify,
    "image-classification": _classify,
    "token-classification": _tokens,
    "fill-mask": _fill_mask,
    "feature-extraction": _embed,
    "image-feature-extraction": _embed,
    "base": _embed,
}


def run_task(task: str, model: str, text: str | None, *, model_dir: str | None = None,
             device: str = "cpu", **opts: Any) -> dict[str, Any]:
    """Load ``model`` for ``task`` and run it on ``text`` (or an image path).

    Args:
        image: the image (zero-shot image classification; else ``text`` is its path).
        labels: comma-separated candidate labels (zero-shot image classification).
        template: the sentence each label goes in (default ``"This is a photo of {}."``).
        on_text: generation tasks: called with each piece of text as it is generated.
        chat: text generation: wrap ``text`` as a user message in the model's chat template.

    Returns:
        A JSON-able dict: ``generated_text``, ``labels``, ``tokens``, ``masks`` or ``embedding``.

    Raises:
        UnknownTaskError, ModelNotFoundError, InputError, TokenizerError, ...
    """
    from ..auto import AutoLoader

    defaults = {"max_new_tokens": 32, "sample": False, "temperature": 1.0, "top_k": None,
                "top_p": None, "seed": None, "repetition_penalty": 1.0, "on_text": None,
                "chat": False}
    from ..errors import InputError

    text = opts.pop("image", None) or text
    if text is None:
        raise InputError("no input: give the text (or image path) after the model name")
    loader = AutoLoader(task, model_name=model, model_dir=model_dir, device=device)
    result = _HANDLERS[loader.task](loader, text, {**defaults, **opts})
    return {"task": loader.task, "model": type(loader.get_model()).__name__, **result}


def _print_piece(text: str) -> None:
    print(text, end="", flush=True)


def _run(args) -> int:
    # plain output streams generated text as it comes; --json prints one object at the end
    on_text = None if args.json else _print_piece
    result = run_task(args.task, args.model, args.input, model_dir=args.model_dir,
                      device=args.device, max_new_tokens=args.max_new_tokens, sample=args.sample,
                      temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                      seed=args.seed, repetition_penalty=args.repetition_penalty,
                      on_text=on_text, chat=args.chat, image=args.image, labels=args.labels,
                      template=args.template)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    if "generated_text" in result:
        print()  # the text itself was streamed
    for item in result.get("labels", []):
        print(f"{item['label']}\t{item['score']:.4f}")
    for item in result.get("tokens", []):
        print(f"{item['token']}\t{item['label']}")
    for i, cands in enumerate(result.get("masks", [])):
        print(f"mask {i}: " + ", ".join(f"{c['token']} ({c['score']:.3f})" for c in cands))
    if "embedding" in result:
        head = ", ".join(f"{x:.4f}" for x in result["embedding"][:8])
        print(f"dim {result['dim']}: [{head}{', ...' if result['dim'] > 8 else ''}]")
    return 0
