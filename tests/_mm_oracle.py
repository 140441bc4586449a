"""mmpretrain 1.2.0 with mmengine 0.10.7 as a test-only oracle.

mmpretrain imports torchvision and OpenCV (mmcv's image helpers) at import time, only for
datasets, transforms and metrics these tests never run; the torchvision wheel does not load
against the CPU torch, and OpenCV is a large native dependency. Stand-in modules take their
place in ``sys.modules`` before mmpretrain is imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
import warnings

_STUBBED = ("torchvision", "cv2")


class _Stub(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in _STUBBED:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _Stub(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def load():
    """``(mmpretrain MODELS, mmengine Config, mmengine load_checkpoint, save_checkpoint,
    get_model_complexity_info)``."""
    if "mmpretrain.registry" in sys.modules:
        from mmengine.analysis import get_model_complexity_info
        from mmengine.config import Config
        from mmengine.runner import load_checkpoint, save_checkpoint
        from mmpretrain.registry import MODELS

        return MODELS, Config, load_checkpoint, save_checkpoint, get_model_complexity_info
    for name in _STUBBED:
        if name in sys.modules:
            raise RuntimeError(f"a real {name} is imported; the oracle needs its stand-in")
    # transformers caches whether torchvision is installed: ask before a stand-in can answer
    from transformers.utils import import_utils

    import_utils.is_torchvision_available()
    finder = _StubFinder()
    sys.meta_path.insert(0, finder)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import mmpretrain.models  # noqa: F401  (registers the components)
            import mmpretrain.structures  # noqa: F401
            from mmengine.analysis import get_model_complexity_info
            from mmengine.config import Config
            from mmengine.runner import load_checkpoint, save_checkpoint
            from mmpretrain.registry import MODELS
    finally:
        # the stand-ins must not outlive the import: transformers asks whether torchvision
        # is installed, and a stand-in would say yes
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n.split(".")[0] in _STUBBED]:
            if isinstance(sys.modules[name], _Stub):
                del sys.modules[name]
    return MODELS, Config, load_checkpoint, save_checkpoint, get_model_complexity_info


def configs_dir():
    """mmpretrain's own config tree, shipped in its wheel."""
    from pathlib import Path

    import mmpretrain

    return Path(mmpretrain.__file__).parent / ".mim" / "configs"
