"""Torch objects in an estimator's state, stored without running code on reading.

:class:`TorchStateMixin` pickles estimators device-safely; the functions below
serve it and :func:`sk_deepunsup.load`:

- :func:`rebuild_checked` rebuilds a network from the estimator's parameters
  only after a dry build on the ``meta`` device (no memory) showed that its
  tensors have exactly the shapes of the stored weights, so parameters that
  describe a huge network cannot allocate it;
- :func:`pack_module` / :func:`unpack_module` store a user's own torch module
  (a custom encoder) as a skeleton whose tensors are replaced by references
  into a ``torch.load(weights_only=True)`` payload: its classes are pickled by
  the enclosing pickle, where an allow-list unpickler sees them, and its
  tensors never go through ``torch.load(weights_only=False)``.
"""

from __future__ import annotations

import copy
import io
import math
import warnings

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ._devices import device_available, make_generator

__all__ = [
    "TorchStateMixin", "check_optimizer_state", "holds_tensor", "pack_module", "rebuild_checked",
    "tensor_layout",
    "unpack_module",
]


class _OnMeta(TorchFunctionMode):
    """Every tensor created while active lands on the meta device: shapes, no memory."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if "device" in kwargs:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def tensor_layout(tensors) -> dict:
    """``{name: (shape, is floating point, dtype)}``; the first two must agree before loading."""
    return {
        k: (tuple(t.shape), t.is_floating_point(), str(t.dtype).removeprefix("torch."))
        for k, t in tensors.items()
    }


def _agree(expected: dict, stored: dict) -> bool:
    """Same names, shapes and floating-pointness (a float64 file loads into float32 weights)."""
    return set(expected) == set(stored) and all(expected[k][:2] == stored[k][:2] for k in expected)


def _first_line(exc: Exception) -> str:
    """An error's first line, without the C++ frames torch appends."""
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def _describe_mismatch(expected: dict, stored: dict) -> str:
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    if missing or unexpected:
        return f"missing {missing[:3]}, unexpected {unexpected[:3]}"
    for key in expected:
        if expected[key][0] != stored[key][0]:
            return (
                f"{key} has shape {list(stored[key][0])} in the file, the parameters "
                f"describe {list(expected[key][0])}"
            )
        if expected[key][1] != stored[key][1]:
            return f"{key} has dtype {stored[key][2]} in the file, the network's is {expected[key][2]}"
    return "different tensors"  # pragma: no cover - only the cases above differ


def _on_meta(estimator):
    """A shallow copy of ``estimator`` whose torch modules (a user's encoder) are on ``meta``.

    The dry build then allocates nothing, also where it runs a user's module.
    """
    modules = {k: v for k, v in vars(estimator).items() if isinstance(v, nn.Module)}
    if not modules:
        return estimator
    probe = object.__new__(type(estimator))  # no pickling protocol: plain attributes
    probe.__dict__.update(vars(estimator))
    for key, module in modules.items():
        setattr(probe, key, copy.deepcopy(module).to("meta"))
    return probe


def _check_declared_sizes(estimator, name: str, layout: dict) -> None:
    """Refuse ``hidden_layer_sizes`` with more layers or units than the stored weights hold.

    Each hidden layer is a layer with a weight tensor of at least its width,
    so the stored tensors bound the count and the stored values the sum. Checked
    before the dry build, whose time grows with the layer count.
    """
    sizes = getattr(estimator, "hidden_layer_sizes", None)
    if not isinstance(sizes, (tuple, list)) or not all(isinstance(s, int) for s in sizes):
        return  # not a list of widths: the dry build refuses it
    params = estimator.get_params(deep=False) if hasattr(estimator, "get_params") else {}
    if any(isinstance(v, nn.Module) for v in params.values()):
        return  # a user's encoder/decoder, not the widths, shapes the network
    values = sum(math.prod(shape) for shape, *_ in layout.values())
    if len(sizes) > len(layout) or sum(sizes) > values:
        raise ValueError(
            f"the saved weights of {type(estimator).__name__}.{name} do not fit the network "
            f"rebuilt from its parameters (hidden_layer_sizes declares {len(sizes)} layers of "
            f"{sum(sizes)} units, more than {len(layout)} stored tensors of {values} values "
            "could hold); the file is corrupt or was edited"
        )


def rebuild_checked(estimator, name: str, layout: dict) -> nn.Module:
    """``estimator._rebuild_module(name)``, built only if its tensors match ``layout``.

    ``layout`` is :func:`tensor_layout` of the stored weights. Any failure of
    the dry build means parameters the estimator cannot have been fitted with:
    a ``ValueError`` says so, and nothing of the described size is allocated.
    """
    cls = type(estimator).__name__
    _check_declared_sizes(estimator, name, layout)
    try:
        owner = _on_meta(estimator)
        with torch.device("meta"), _OnMeta():
            probe = owner._rebuild_module(name)
        expected = None if probe is None else tensor_layout(probe.state_dict())
    except Exception as exc:  # parameters read from a file: any failure means corrupt
        raise ValueError(
            f"{cls} cannot rebuild its network {name!r} from the stored parameters "
            f"({type(exc).__name__}: {_first_line(exc)}); the file is corrupt or was edited."
        ) from None
    if expected is None:
        raise ValueError(
            f"{cls} has no network {name!r} to rebuild; the file is corrupt or was "
            "written by a different version."
        )
    if not _agree(expected, layout):
        raise ValueError(
            f"the saved weights of {cls}.{name} do not fit the network rebuilt from "
            f"its parameters ({_describe_mismatch(expected, layout)}); the file is "
            "corrupt or was edited."
        )
    return estimator._rebuild_module(name)


def _optimizer_state_problem(state, module) -> str | None:
    """What is wrong with optimizer ``state`` for ``module``'s trainable tensors, or None."""
    if not isinstance(module, nn.Module):
        return "the estimator has no network module_"
    if not isinstance(state, dict) or set(state) != {"step", "exp_avg", "exp_avg_sq"}:
        return "it is not a dict of step, exp_avg and exp_avg_sq"
    step = state["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return f"its step is {step!r}, not a count of steps"
    trainable = [p for p in module.parameters() if p.requires_grad]
    n = sum(p.numel() for p in trainable)
    dtype = str(trainable[0].dtype).removeprefix("torch.") if trainable else None
    for key in ("exp_avg", "exp_avg_sq"):
        moment = state[key]
        if not isinstance(moment, torch.Tensor):
            return f"its {key} is a {type(moment).__name__}, not a tensor"
        found = str(moment.dtype).removeprefix("torch.")
        if moment.dim() != 1 or moment.numel() != n or found != dtype:
            return (
                f"its {key} has shape {list(moment.shape)} and dtype {found}, the "
                f"network module_ has {n} trainable values of dtype {dtype}"
            )
    return None


def check_optimizer_state(estimator) -> None:
    """Refuse an ``_optimizer_state`` (``partial_fit``'s Adam moments) that does not fit ``module_``."""
    state = getattr(estimator, "_optimizer_state", None)
    if state is None:
        return
    problem = _optimizer_state_problem(state, getattr(estimator, "module_", None))
    if problem is not None:
        raise ValueError(
            f"the optimizer state of {type(estimator).__name__} does not fit its network "
            f"({problem}); the file is corrupt or was edited"
        )


def holds_tensor(value, depth: int = 0) -> bool:
    """Whether ``value`` is a tensor or a dict/list/tuple that holds one."""
    if isinstance(value, torch.Tensor):
        return True
    if depth > 8:
        return False
    if isinstance(value, dict):
        return any(holds_tensor(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(holds_tensor(v, depth + 1) for v in value)
    return False


class TensorRef:
    """Stands in a packed module for the tensor ``index`` of its payload."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = int(index)

    def __reduce__(self):
        return (TensorRef, (self.index,))


def _module_tensors(module: nn.Module):
    """Each (owner submodule, place, attribute name, tensor) holding a tensor."""
    for sub in module.modules():
        for place in ("_parameters", "_buffers"):
            for key, value in getattr(sub, place).items():
                if isinstance(value, (torch.Tensor, TensorRef)):
                    yield sub, place, key, value
        for key, value in vars(sub).items():
            if isinstance(value, (torch.Tensor, TensorRef)):
                yield sub, None, key, value


def pack_module(module: nn.Module):
    """``(skeleton, tensors)``: a copy of ``module`` with each tensor a :class:`TensorRef`.

    ``tensors`` is a list of ``(data, is_parameter, requires_grad)``; a
    tensor shared by two places (tied weights) is stored once.
    """
    memo, tensors = {}, []
    for _, _, _, value in _module_tensors(module):
        if id(value) not in memo:
            memo[id(value)] = TensorRef(len(tensors))
            tensors.append(
                (value.detach(), isinstance(value, nn.Parameter), bool(value.requires_grad))
            )
    return copy.deepcopy(module, memo), tensors


def unpack_module(skeleton, tensors: list, where: str) -> nn.Module:
    """Put the tensors :func:`pack_module` took out back into ``skeleton``."""
    if not isinstance(skeleton, nn.Module):
        raise ValueError(f"{where} is not a torch module; the pickle is corrupt.")
    restored = {}
    for sub, place, key, ref in list(_module_tensors(skeleton)):
        if not isinstance(ref, TensorRef) or not 0 <= ref.index < len(tensors):
            raise ValueError(f"{where} refers to a missing tensor; the pickle is corrupt.")
        if ref.index not in restored:
            data, is_parameter, requires_grad = tensors[ref.index]
            if not isinstance(data, torch.Tensor):
                raise ValueError(f"{where} holds a tensor that is not one; the pickle is corrupt.")
            restored[ref.index] = (
                nn.Parameter(data, requires_grad=requires_grad) if is_parameter
                else data.requires_grad_(requires_grad and data.is_floating_point())
            )
        if place is None:
            sub.__dict__[key] = restored[ref.index]
        else:
            getattr(sub, place)[key] = restored[ref.index]
    return skeleton


class TorchStateMixin:
    """Device-safe pickling of the torch objects held in fitted attributes.

    Networks are stored as state dicts and rebuilt from the estimator's
    parameters (:meth:`_rebuild_module`) on unpickling, after a dry build on
    the ``meta`` device showed that the parameters describe exactly the
    stored weights; a user's own module (a custom encoder) is pickled as a
    skeleton without its tensors. All tensors are serialised with
    ``torch.save`` into one byte string and read back with
    ``torch.load(weights_only=True)`` and ``map_location``: on the device
    they were fitted on when it is available, otherwise on the CPU (with a
    warning), so a model fitted on a GPU unpickles on a CPU-only machine.
    Unpickling never calls ``torch.load(weights_only=False)``: the classes
    an unpickler creates are those the pickle names, so an allow-list
    unpickler decides them. Pickle files run code when loaded: load them only
    from trusted sources, and use :func:`sk_deepunsup.save` and
    :func:`sk_deepunsup.load` otherwise.
    """

    def _build_module(self, n_features: int, generator: torch.Generator) -> nn.Module:
        """The untrained network ``module_`` of an estimator fitted on ``n_features``.

        Built from the estimator's parameters alone, its initial weights drawn
        from ``generator``. Estimators that train one network define it.
        """
        raise NotImplementedError

    def _builds_module(self) -> bool:
        return type(self)._build_module is not TorchStateMixin._build_module

    def _rebuild_module(self, name: str):
        """An untrained network of the fitted shape for attribute ``name``, or None.

        The hook of :func:`sk_deepunsup.load` and of unpickling: the saved
        weights are loaded into it. This default rebuilds ``module_`` with
        :meth:`_build_module`; estimators with other networks override it.
        """
        if name == "module_" and self._builds_module():
            return self._build_module(self.n_features_in_, make_generator(0))
        return None

    def _rebuildable(self, name: str, module: nn.Module) -> bool:
        """Whether pickling may store ``module`` as a state dict (see _rebuild_module)."""
        if not type(module).__module__.startswith("sk_deepunsup."):
            return False
        if type(self)._rebuild_module is not TorchStateMixin._rebuild_module:
            return True
        return name == "module_" and self._builds_module()

    def __getstate__(self):
        state = super().__getstate__()
        torch_items = {k: v for k, v in state.items() if holds_tensor(v) or isinstance(v, nn.Module)}
        if not torch_items:
            return state
        state = {k: v for k, v in state.items() if k not in torch_items}
        safe = {"tensors": {}, "state_dicts": {}, "packed": {}}
        for name, value in torch_items.items():
            if not isinstance(value, nn.Module):
                safe["tensors"][name] = value
            elif self._rebuildable(name, value):
                safe["state_dicts"][name] = value.state_dict()
            else:  # the user's module: its classes go into this pickle, its tensors not
                state[name], safe["packed"][name] = pack_module(value)
        buffer = io.BytesIO()
        torch.save(safe, buffer)
        state["_torch_payload"] = buffer.getvalue()
        return state

    def __setstate__(self, state):
        payload = state.pop("_torch_payload", None)
        if "_torch_modules" in state:
            raise ValueError(
                f"this pickle of {type(self).__name__} holds torch modules pickled whole "
                "(written by sk_deepunsup 0.1.0 or earlier), which only an unsafe "
                "torch.load could read. Unpickle it with that version and pickle it again."
            )
        if payload is None:
            super().__setstate__(state)
            return
        fitted_on = torch.device(state.get("device_", "cpu"))
        target = fitted_on
        if not device_available(fitted_on):
            warnings.warn(
                f"{type(self).__name__} was fitted on {fitted_on}, which is not "
                "available here; it was loaded on the CPU.",
                UserWarning,
            )
            target = torch.device("cpu")
            state["device_"] = "cpu"
        safe = torch.load(io.BytesIO(payload), map_location=target, weights_only=True)
        if not isinstance(safe, dict) or not {"tensors", "state_dicts"} <= set(safe):
            raise ValueError(f"the pickle of {type(self).__name__} is corrupt.")
        for name, tensors in safe.get("packed", {}).items():
            state[name] = unpack_module(state.get(name), tensors, f"{type(self).__name__}.{name}")
        state.update(safe["tensors"])
        super().__setstate__(state)
        # every network is built only after a dry build matched its stored
        # weights, also beside a user's module (which came whole in the pickle)
        for name, state_dict in safe["state_dicts"].items():
            module = rebuild_checked(self, name, tensor_layout(state_dict))
            module.load_state_dict(state_dict)
            setattr(self, name, module.to(target))
        check_optimizer_state(self)
