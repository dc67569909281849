"""Counting device-to-host reads: each one makes the host wait for the GPU stream to reach it.

``with DeviceReadCounter() as reads: ...`` counts the operators that hand a tensor's value to the host (``.item()``,
``float(t)``, ``bool(t)``, ``torch.equal``, and copies of an accelerator tensor to the CPU). It works on the CPU
too, where it counts the reads a GPU run would pay for, which is how the tests hold the training step to one.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_READ_OPERATORS = {
    "aten._local_scalar_dense.default",
    "aten.is_nonzero.default",
    "aten.equal.default",
    "aten.allclose.default",
    "aten.item.default",
}


class DeviceReadCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func)
        if name in _READ_OPERATORS:
            self.count += 1
        elif name == "aten._to_copy.default" and args and isinstance(args[0], torch.Tensor):
            target = kwargs.get("device")
            if args[0].device.type != "cpu" and target is not None and torch.device(target).type == "cpu":
                self.count += 1
        return func(*args, **kwargs)
