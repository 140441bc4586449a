"""One measurement in a fresh process; prints a JSON object on its last stdout line.

    python benchmarks/_worker.py MODE MODEL_DIR

Modes: cold-hubloader, cold-transformers (import + load + one forward; the parent times the
whole process), load-hubloader, load-floor, load-transformers (load only, imports excluded),
mem-hubloader, mem-transformers (peak RSS growth over the post-import baseline),
import-torch, import-hubloader, import-hubloader-models.
"""

from __future__ import annotations

import json
import resource
import sys
import time

T_START = time.perf_counter()


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _reset_peak() -> None:
    """Reset the kernel's RSS high-water mark, so import-time peaks do not count."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _peak_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _inputs(torch):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 2000, (1, 128), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _load(lib: str, d: str):
    if lib == "hubloader":
        from hubloader.models import BertModel

        return BertModel.from_pretrain(d)
    if lib == "transformers":
        from transformers import BertModel

        return BertModel.from_pretrained(d).eval()
    if lib == "floor":  # meta build + safetensors mmap load + load_state_dict(assign=True)
        import torch
        from safetensors.torch import load_file
        from transformers import BertConfig, BertModel

        config = BertConfig.from_pretrained(d)
        with torch.device("meta"):
            model = BertModel(config)
        model.load_state_dict(load_file(f"{d}/model.safetensors"), strict=False, assign=True)
        return model.eval()
    raise SystemExit(f"unknown lib {lib}")


def _preimport(lib: str):
    import torch  # noqa: F401

    if lib == "hubloader":
        import hubloader.models  # noqa: F401
        import hubloader.load.modeling  # noqa: F401
    else:
        import safetensors.torch  # noqa: F401
        from transformers import BertConfig, BertModel  # noqa: F401


def main() -> None:
    mode, d = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "")
    kind, _, lib = mode.partition("-")
    out: dict = {}
    if kind == "cold":
        model = _load(lib, d)
        import torch

        with torch.no_grad():
            model(**_inputs(torch))
        out["in_process_s"] = time.perf_counter() - T_START
    elif kind == "load":
        _preimport(lib)
        t0 = time.perf_counter()
        _load(lib, d)
        out["load_s"] = time.perf_counter() - t0
    elif kind == "mem":
        _preimport(lib)
        import torch

        inputs = _inputs(torch)
        with torch.no_grad():  # warm torch's own lazy state on a tiny model first
            torch.nn.Linear(4, 4)(torch.ones(1, 4))
        base = _rss_mb()
        _reset_peak()
        model = _load(lib, d)
        with torch.no_grad():
            model(**inputs)
        peak = _peak_mb()
        out.update(baseline_mb=base, peak_mb=peak, growth_mb=peak - base)
    elif kind == "import":
        if lib == "hubloader-models-after-torch":
            import torch  # noqa: F401  (untimed: what hubloader adds on top of torch)
        t0 = time.perf_counter()
        if lib == "torch":
            import torch  # noqa: F401,F811
        elif lib == "hubloader":
            import hubloader  # noqa: F401
        elif lib in ("hubloader-models", "hubloader-models-after-torch"):
            import hubloader.models  # noqa: F401
        out["import_s"] = time.perf_counter() - t0
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
