"""The Trainer's checkpoints against tampering and full disks: resuming from a ``last/`` whose
files were changed raises typed errors (no pickled code runs), and a save that hits a
file-size limit raises DiskFullError and keeps the previous checkpoint."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from torch import nn

from hubloader.training.checkpoints import STATE_JSON, STATE_PT, TrainerState, load_checkpoint, save_checkpoint
from hubloader.errors import ConfigError, HubLoaderError, WeightsError
from hub_helpers import run_py


def _parts():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return dict(model=model, optimizer=optimizer, lr_scheduler=scheduler, scaler=scaler)


@pytest.fixture
def last(tmp_path):
    folder = tmp_path / "save" / "last"
    save_checkpoint(folder, state=TrainerState(epoch=1, global_step=7), **_parts())
    return folder


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch /tmp/hubloader-pickle-ran",))


@pytest.mark.parametrize("tamper, error", [
    (lambda d: (d / STATE_JSON).write_text("{not json"), ConfigError),
    (lambda d: (d / STATE_JSON).write_text("[1, 2]"), ConfigError),
    (lambda d: (d / STATE_JSON).write_text('{"epoch": "one", "global_step": {}}'), ConfigError),
    (lambda d: (d / STATE_JSON).write_bytes(b"\xff\xfe\x00"), ConfigError),
    (lambda d: (d / STATE_PT).write_bytes(pickle.dumps(_Boom())), WeightsError),
    (lambda d: (d / STATE_PT).write_bytes(b"not a zip at all"), WeightsError),
    (lambda d: torch.save({"optimizer": {}}, d / STATE_PT), WeightsError),
    (lambda d: torch.save({"optimizer": {"state": 5, "param_groups": []},
                           "lr_scheduler": {}, "scaler": {}}, d / STATE_PT), WeightsError),
    (lambda d: (d / STATE_PT).unlink(), WeightsError),
    (lambda d: __import__("safetensors.torch").torch.save_file(
        {"weight": torch.zeros(5, 5), "bias": torch.zeros(3)}, str(d / "model.safetensors")),
     ConfigError),
])
def test_a_tampered_last_checkpoint_raises_typed(last, tamper, error):
    marker = "/tmp/hubloader-pickle-ran"
    if os.path.exists(marker):
        os.unlink(marker)
    tamper(last)
    with pytest.raises(error) as info:
        load_checkpoint(last, **_parts())
    assert isinstance(info.value, (HubLoaderError, ValueError))
    assert "resume=False" in str(info.value)
    assert not os.path.exists(marker), "pickled code ran"


def test_a_save_past_the_file_size_limit_is_disk_full(last):
    before = {p.name: p.read_bytes() for p in last.iterdir()}
    code = f"""
import resource, signal, torch
from torch import nn
from hubloader.training.checkpoints import TrainerState, save_checkpoint
from hubloader.errors import DiskFullError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
model = nn.Linear(512, 512)
opt = torch.optim.AdamW(model.parameters())
model(torch.randn(2, 512)).sum().backward()
opt.step()
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 19, 1 << 19))
try:
    save_checkpoint({str(last)!r}, model=model, optimizer=opt,
                    lr_scheduler=torch.optim.lr_scheduler.LinearLR(opt),
                    scaler=torch.amp.GradScaler("cpu", enabled=False), state=TrainerState())
except DiskFullError as err:
    assert isinstance(err, OSError)
    print("typed")
"""
    done = run_py(code)
    assert done.stdout.strip() == "typed", done.stderr[-2000:]
    assert {p.name: p.read_bytes() for p in last.iterdir()} == before  # the old one is kept
    assert [p.name for p in last.parent.iterdir()] == ["last"]  # no temp folder left
