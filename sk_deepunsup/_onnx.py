"""skl2onnx parsers, shape calculators and converters for this package's estimators.

Each network is the estimator's own, traced by torch's exporter
(``torch.onnx.export``, TorchScript-based) from the representation contract
(:mod:`._representation`): ``get_encoder()`` for ``transform``, the
clusterer's ``get_assignment_module()`` for ``predict_proba``, an
autoencoder's encoder and decoder for the detector's reconstruction. Batch
normalisation is folded into the linear layers and dropout is the identity
(evaluation mode). Float32 and float64 inputs are both supported: the graph
computes in the input's type, as the estimators do on the CPU, except the
few operators ONNX Runtime has only in float32 (:data:`FLOAT32_ONLY`).

Outputs, by estimator:

- ``DeepAutoencoder``, ``VariationalAutoencoder``, ``NeighborEmbedding``:
  ``variable``, the ``transform`` output, shape ``(N, n_components)``.
- ``DeepEmbeddingClusterer``: ``label`` (int64, ``(N,)``, ``predict``) and
  ``probabilities`` (``(N, n_clusters)``, ``predict_proba``).
- ``AutoencoderOutlierDetector``: ``label`` (int64, ``(N,)``, +1 / -1,
  ``predict``) and ``scores`` (``(N,)``, ``decision_function``).

Registering needs skl2onnx (the ``onnx`` extra); :mod:`sk_deepunsup.onnx`
registers the converters.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import torch
from torch import nn

try:  # optional: the "onnx" extra (the doctest collector imports this module too)
    import onnx
    from onnx import helper, numpy_helper
    from onnx import onnx_pb as onnx_proto
    from skl2onnx import update_registered_converter
    from skl2onnx.common.data_types import (
        Int64TensorType,
        guess_numpy_type,
        guess_proto_type,
        guess_tensor_type,
    )
except ImportError as exc:  # pragma: no cover - exercised by test_onnx
    _IMPORT_ERROR: ImportError | None = exc
else:
    _IMPORT_ERROR = None

from ._autoencoder import DeepAutoencoder
from ._clustering import DeepEmbeddingClusterer
from ._neighbor_embedding import NeighborEmbedding
from ._nn import MLP, decode_output
from ._outlier import AutoencoderOutlierDetector, has_distance_part
from ._representation import frozen_copy
from ._vae import VariationalAutoencoder

__all__ = ["register_converters"]

#: Lowest ONNX opset the converters emit (ReduceSum takes ``axes`` as an input).
MIN_OPSET = 13

#: Highest opset of torch's TorchScript exporter; the networks' nodes are
#: traced at ``min(target_opset, TORCH_MAX_OPSET)``, valid in later opsets too.
TORCH_MAX_OPSET = 20

#: Operators ONNX Runtime implements for float32 only: in a float64 graph they
#: run on a float32 copy of their input (a relative error of about 1e-7).
FLOAT32_ONLY = {"Celu", "Conv", "ConvTranspose", "Elu", "Erf", "Gelu", "LeakyRelu", "Selu"}


class _Graph:
    """A small helper over skl2onnx's container: constants and nodes by name."""

    def __init__(self, scope, operator, container):
        self.scope = scope
        self.container = container
        self.input_type = operator.inputs[0].type
        self.proto = guess_proto_type(self.input_type)
        self.dtype = guess_numpy_type(self.input_type)
        self.prefix = operator.full_name
        if container.target_opset < MIN_OPSET:
            raise RuntimeError(
                f"converting {type(operator.raw_operator).__name__} needs target_opset >= "
                f"{MIN_OPSET}, got {container.target_opset}."
            )

    def name(self, seed: str) -> str:
        return self.scope.get_unique_variable_name(f"{self.prefix}_{seed}")

    def const(self, value, seed: str, dtype=None) -> str:
        arr = np.asarray(value, dtype=dtype or self.dtype)
        name = self.name(seed)
        proto = (
            guess_proto_type(Int64TensorType()) if arr.dtype == np.int64 else self.proto
        )
        self.container.add_initializer(name, proto, list(arr.shape), arr.ravel().tolist())
        return name

    def node(self, op_type: str, inputs, seed: str | None = None, output: str | None = None,
             **attrs) -> str:
        out = output or self.name(seed or op_type.lower())
        self.container.add_node(
            op_type,
            list(inputs),
            [out],
            name=self.scope.get_unique_operator_name(f"{self.prefix}_{op_type}"),
            **attrs,
        )
        return out

    def scalar(self, value: float, seed: str = "c") -> str:
        return self.const(np.array(value), seed)

    def reduce_sum(self, x: str, axis: int, keepdims: int = 0) -> str:
        axes = self.const(np.array([axis], dtype=np.int64), "axes", np.int64)
        return self.node("ReduceSum", [x, axes], keepdims=keepdims)

    def reshape(self, x: str, shape) -> str:
        return self.node("Reshape", [x, self.const(np.array(shape, dtype=np.int64), "shape",
                                                   np.int64)])


def _fold_batch_norm(module):
    """``module`` with each MLP's batch normalisation (evaluation mode) folded into its linears."""
    for mlp in module.modules():
        if not isinstance(mlp, MLP) or mlp.norms is None:
            continue
        with torch.no_grad():
            for lin, norm in zip(mlp.linears, mlp.norms):
                scale = (norm.running_var.double() + norm.eps).rsqrt()
                shift = -norm.running_mean.double() * scale
                if norm.affine:
                    gamma = norm.weight.double()
                    scale, shift = scale * gamma, shift * gamma + norm.bias.double()
                lin.weight.copy_(lin.weight.double() * scale[:, None])
                lin.bias.copy_(lin.bias.double() * scale + shift)
        mlp.norms = None
    return module


@contextlib.contextmanager
def _traced(module):
    """Turn a failure of torch's exporter into a NotImplementedError that names the network."""
    try:
        yield
    except Exception as exc:
        own = ("sk_deepunsup.", "torch.")
        users = sorted({type(m).__name__ for m in module.modules()
                        if not type(m).__module__.startswith(own)})
        which = f"your module {', '.join(users)}" if users else type(module).__name__
        raise NotImplementedError(
            f"ONNX export traces the fitted network with torch.onnx.export, which cannot "
            f"export it ({which}): {type(exc).__name__}: {exc}"
        ) from exc


def _exported(module, n_features: int, dtype, opset: int, n_outputs: int):
    """``module`` (a frozen copy, see :func:`~._representation.frozen_copy`) as an ONNX graph.

    Traced by torch's exporter in evaluation mode at ``dtype`` (dropout is
    the identity; batch normalisation is folded into the linear layers);
    input ``x`` of shape ``(N, n_features)``, outputs ``y0``, ``y1``...
    """
    module = _fold_batch_norm(module.to(torch.float64 if dtype == np.float64 else torch.float32))
    example = torch.zeros(2, n_features, dtype=next(module.parameters()).dtype)
    outputs = [f"y{i}" for i in range(n_outputs)]
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings(), _traced(module):
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        # a trace that depends on the example's values would be a wrong graph: refuse it
        warnings.simplefilter("error", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            (example,),
            buffer,
            dynamo=False,
            input_names=["x"],
            output_names=outputs,
            dynamic_axes={name: {0: "N"} for name in ["x", *outputs]},
            opset_version=min(opset, TORCH_MAX_OPSET),
            do_constant_folding=True,
        )
    return onnx.load_from_string(buffer.getvalue()).graph


def _emit_module(g: _Graph, module, x: str, n_features: int, n_outputs: int = 1):
    """The nodes of ``module`` applied to ``x``, added to ``g``; the names of its outputs."""
    graph = _exported(module, n_features, g.dtype, g.container.target_opset, n_outputs)
    names = {"x": x}
    rename = lambda name: names.setdefault(name, g.name(name.strip("/").replace("/", "_")))  # noqa: E731
    for init in graph.initializer:
        tensor = numpy_helper.from_array(numpy_helper.to_array(init))
        g.container.add_initializer(rename(init.name), tensor.data_type, list(tensor.dims), tensor)
    for node in graph.node:
        inputs = [rename(name) if name else "" for name in node.input]
        outputs = [rename(name) for name in node.output]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type in FLOAT32_ONLY and g.dtype != np.float32:
            as_float = [g.node("Cast", [name], to=onnx_proto.TensorProto.FLOAT) if name else ""
                        for name in inputs]
            g.node("Cast", [g.node(node.op_type, as_float, **attrs)], output=outputs[0],
                   to=g.proto)
            continue
        g.container.add_node(
            node.op_type, inputs, outputs, op_domain=node.domain,
            name=g.scope.get_unique_operator_name(f"{g.prefix}_{node.op_type}"), **attrs,
        )
    return [names[f"y{i}"] for i in range(n_outputs)]


class _Reconstruction(nn.Module):
    """``inverse_transform(transform(x))`` of an autoencoder: its decoder's output in data space."""

    def __init__(self, autoencoder):
        super().__init__()
        self.encoder = autoencoder.get_encoder()
        self.decoder = frozen_copy(autoencoder.module_.decoder)
        self.loss = autoencoder.loss

    def forward(self, x):
        return decode_output(self.decoder(self.encoder(x)), self.loss)


# -- converters ------------------------------------------------------------------------


def _convert_representation(scope, operator, container):
    g = _Graph(scope, operator, container)
    model = operator.raw_operator
    (code,) = _emit_module(g, model.get_encoder(), operator.inputs[0].full_name,
                           model.n_features_in_)
    g.node("Identity", [code], output=operator.outputs[0].full_name)


def _convert_clusterer(scope, operator, container):
    g = _Graph(scope, operator, container)
    model = operator.raw_operator
    (proba,) = _emit_module(g, model.get_assignment_module(), operator.inputs[0].full_name,
                            model.n_features_in_)
    probabilities = g.node("Identity", [proba], output=operator.outputs[1].full_name)
    g.node("ArgMax", [probabilities], output=operator.outputs[0].full_name, axis=1, keepdims=0)


def _slice_columns(g: _Graph, x: str, start: int, stop: int) -> str:
    ints = lambda v, seed: g.const(np.array([v], dtype=np.int64), seed, np.int64)  # noqa: E731
    return g.node("Slice", [x, ints(start, "start"), ints(stop, "stop"), ints(1, "axis")])


def _neighbour_distance(g: _Graph, model, x: str) -> str:
    """Mean L1 distance to the nearest reference samples, not counting an identical one."""
    reference = model.reference_
    k = min(model.n_neighbors, reference.shape[0] - 1)
    diff = g.node("Sub", [g.reshape(x, [-1, 1, reference.shape[1]]),
                          g.const(reference, "reference")])
    dist = g.reduce_sum(g.node("Abs", [diff]), 2)  # (N, n_ref)
    nearest, rows = g.name("topk_values"), g.name("topk_indices")
    g.container.add_node(
        "TopK",
        [dist, g.const(np.array([k + 1], dtype=np.int64), "k", np.int64)],
        [nearest, rows],
        name=g.scope.get_unique_operator_name(f"{g.prefix}_TopK"),
        largest=0,
        sorted=1,
    )
    own = g.node("Equal", [_slice_columns(g, nearest, 0, 1), g.scalar(0.0)])  # (N, 1)
    chosen = g.node("Where", [own, _slice_columns(g, nearest, 1, k + 1),
                              _slice_columns(g, nearest, 0, k)])
    return g.node("Mul", [g.reduce_sum(chosen, 1), g.scalar(1.0 / k)])


def _convert_detector(scope, operator, container):
    g = _Graph(scope, operator, container)
    model = operator.raw_operator
    x = operator.inputs[0].full_name
    (reconstruction,) = _emit_module(g, _Reconstruction(model.autoencoder_), x,
                                     model.n_features_in_)
    residual = g.node("Abs", [g.node("Sub", [x, reconstruction])])
    scaled = g.node("Mul", [residual, g.const(1.0 / model.residual_scale_, "inv_scale")])
    outlyingness = g.node("Mul", [g.reduce_sum(scaled, 1), g.scalar(1.0 / model.part_scale_[0])])
    if has_distance_part(model):
        distance = g.node("Mul", [_neighbour_distance(g, model, x),
                                  g.scalar(1.0 / model.part_scale_[1])])
        outlyingness = g.node("Add", [outlyingness, distance])
    decision = g.node("Sub", [g.node("Neg", [outlyingness]), g.scalar(model.offset_)],
                      output=operator.outputs[1].full_name)
    is_outlier = g.node("Less", [decision, g.scalar(0.0)])
    g.node(
        "Where",
        [is_outlier, g.const(np.array(-1, dtype=np.int64), "minus_one", np.int64),
         g.const(np.array(1, dtype=np.int64), "one", np.int64)],
        output=operator.outputs[0].full_name,
    )


# -- parsers and shape calculators -----------------------------------------------------


def _declare(scope, model, inputs, outputs):
    operator = scope.declare_local_operator(_ALIASES[type(model)], model)
    operator.inputs = inputs
    for name, tensor_type in outputs:
        operator.outputs.append(scope.declare_local_variable(name, tensor_type))
    return operator.outputs


def _parse_autoencoder(scope, model, inputs, custom_parsers=None):
    return _declare(scope, model, inputs, [("variable", guess_tensor_type(inputs[0].type))])


def _parse_clusterer(scope, model, inputs, custom_parsers=None):
    return _declare(
        scope, model, inputs,
        [("label", Int64TensorType()), ("probabilities", guess_tensor_type(inputs[0].type))],
    )


def _parse_detector(scope, model, inputs, custom_parsers=None):
    return _declare(
        scope, model, inputs,
        [("label", Int64TensorType()), ("scores", guess_tensor_type(inputs[0].type))],
    )


def _check_input(operator):
    model = operator.raw_operator
    shape = operator.inputs[0].type.shape
    if len(operator.inputs) != 1 or shape is None or len(shape) != 2:
        raise RuntimeError(f"{type(model).__name__} expects one 2-D input tensor.")
    if shape[1] is not None and shape[1] != model.n_features_in_:
        raise RuntimeError(
            f"{type(model).__name__} was fitted on {model.n_features_in_} features, "
            f"but the ONNX input has {shape[1]}."
        )
    return operator.inputs[0].get_first_dimension()


def _shape_autoencoder(operator):
    n = _check_input(operator)
    out = operator.outputs[0]
    out.type = guess_tensor_type(operator.inputs[0].type)
    out.type.shape = [n, operator.raw_operator.n_components]


def _shape_clusterer(operator):
    n = _check_input(operator)
    operator.outputs[0].type = Int64TensorType([n])
    operator.outputs[1].type = guess_tensor_type(operator.inputs[0].type)
    operator.outputs[1].type.shape = [n, operator.raw_operator.n_clusters]


def _shape_detector(operator):
    n = _check_input(operator)
    operator.outputs[0].type = Int64TensorType([n])
    operator.outputs[1].type = guess_tensor_type(operator.inputs[0].type)
    operator.outputs[1].type.shape = [n]


_ALIASES = {
    DeepAutoencoder: "SkDeepUnsupDeepAutoencoder",
    VariationalAutoencoder: "SkDeepUnsupVariationalAutoencoder",
    NeighborEmbedding: "SkDeepUnsupNeighborEmbedding",
    DeepEmbeddingClusterer: "SkDeepUnsupDeepEmbeddingClusterer",
    AutoencoderOutlierDetector: "SkDeepUnsupAutoencoderOutlierDetector",
}

_CONVERTERS = {
    DeepAutoencoder: (_shape_autoencoder, _convert_representation, _parse_autoencoder),
    VariationalAutoencoder: (_shape_autoencoder, _convert_representation, _parse_autoencoder),
    NeighborEmbedding: (_shape_autoencoder, _convert_representation, _parse_autoencoder),
    DeepEmbeddingClusterer: (_shape_clusterer, _convert_clusterer, _parse_clusterer),
    AutoencoderOutlierDetector: (_shape_detector, _convert_detector, _parse_detector),
}


def register_converters() -> None:
    """Register every estimator of the package with skl2onnx (idempotent)."""
    if _IMPORT_ERROR is not None:
        raise ImportError(
            "ONNX export needs skl2onnx, onnx and onnxruntime: "
            'pip install "sk-deepunsup[onnx]"'
        ) from _IMPORT_ERROR
    for cls, (shape_fct, convert_fct, parser) in _CONVERTERS.items():
        update_registered_converter(
            cls, _ALIASES[cls], shape_fct, convert_fct, overwrite=True, parser=parser
        )
