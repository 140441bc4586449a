"""A 2.2 GB sharded bf16 Llama loads with about one copy of its weights: a fresh process reads
its own peak RSS (VmHWM) before and after loading and generating."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from synthetic_llama import write_synthetic_llama

_MEASURE = textwrap.dedent("""
    import json, sys
    import torch
    import hubloader.models  # noqa: F401  (the families' import belongs to the baseline)

    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM")

    base = hwm()
    from hubloader import AutoLoader
    model = AutoLoader("lm", model_name=sys.argv[1]).get_model()
    ids = torch.tensor([[1, 15, 27, 300, 4000]])
    out = model.generate(ids, max_new_tokens=2, eos_token_id=[])
    print(json.dumps({"base": base, "peak": hwm(), "dtype": str(model.dtype),
                      "shape": list(out.shape),
                      "finite": bool(torch.isfinite(model(ids)["logits"]).all())}))
""")


@pytest.fixture(scope="session")
def big_llama(tmp_path_factory):
    """Built once per test run, in a temporary directory, never in the repository; removed at
    the end (pytest keeps recent temporary directories, 2.2 GB each)."""
    path = tmp_path_factory.mktemp("big-llama")
    yield path, write_synthetic_llama(path, shards=4)
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(900)
def test_sharded_bf16_checkpoint_loads_with_one_copy_of_the_weights(big_llama):
    path, nbytes = big_llama
    assert nbytes >= 2_000_000_000
    assert len(json.loads((path / "model.safetensors.index.json").read_text())["weight_map"]) > 100
    proc = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True,
                          text=True, timeout=800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["dtype"] == "torch.bfloat16"  # the config's torch_dtype, not float32 (2x)
    assert got["shape"] == [1, 7] and got["finite"]
    grown = got["peak"] - got["base"]
    # the forward pass read (nearly) every weight, so this measures them all once ...
    assert grown >= 0.8 * nbytes, (grown, nbytes)
    # ... and not twice
    assert grown <= 1.1 * nbytes, f"peak RSS grew {grown / nbytes:.3f}x the weights' bytes"
