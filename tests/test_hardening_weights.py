"""safetensors files whose tensors overlap, leave gaps, or stop short of the data section
are refused with ``WeightsError``, exactly where the ``safetensors`` library (the oracle, used
only here) refuses them: overlapping views would share memory, so ``fill_`` on one parameter
would change another."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import load_file

from hubloader.errors import HubLoaderError, WeightsError
from hubloader.load.weights import read_safetensors


def _write(path, entries: dict, data_len: int):
    header = {k: {"dtype": "F32", "shape": [(e - b) // 4], "data_offsets": [b, e]}
              for k, (b, e) in entries.items()}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(range(data_len)))
    return path


@pytest.mark.parametrize("entries,data_len,needle", [
    ({"a": (0, 8), "b": (4, 12)}, 12, "overlaps"),          # b starts inside a
    ({"a": (0, 8), "b": (0, 8)}, 8, "overlaps"),            # both view the same bytes
    ({"a": (0, 16), "b": (4, 8)}, 16, "overlaps"),          # b nested in a
    ({"a": (0, 8), "b": (12, 20)}, 20, "gap"),               # 4 bytes between them
    ({"a": (4, 12)}, 12, "gap"),                             # does not start at 0
    ({"a": (0, 8)}, 12, "cover 8 of"),                       # trailing bytes
])
def test_bad_layouts_are_refused_like_the_safetensors_library(tmp_path, entries, data_len, needle):
    path = _write(tmp_path / "model.safetensors", entries, data_len)
    with pytest.raises(Exception):  # the oracle refuses the file too
        load_file(path)
    with pytest.raises(WeightsError, match=needle) as info:
        read_safetensors(path)
    assert isinstance(info.value, (HubLoaderError, ValueError))
    assert "re-save" in str(info.value)


def test_out_of_order_header_entries_are_accepted_like_the_library(tmp_path):
    """Header order is not data order: a valid file listing ``b`` before ``a`` loads."""
    path = _write(tmp_path / "model.safetensors", {"b": (8, 16), "a": (0, 8)}, 16)
    ours, theirs = read_safetensors(path), load_file(path)
    assert sorted(ours) == sorted(theirs) == ["a", "b"]
    for key in ours:
        assert torch.equal(ours[key], theirs[key])
    ours["a"].fill_(7)
    assert not torch.equal(ours["b"], torch.full_like(ours["b"], 7))
