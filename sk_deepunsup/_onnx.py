"""skl2onnx parsers, shape calculators and converters for this package's estimators.

The networks are written out as plain ONNX operators from the fitted weights:
each linear layer a ``Gemm`` (batch normalisation, in evaluation mode, folded
into it; dropout is the identity at inference), each activation its ONNX
operator or a short composition of elementary ones. Float32 and float64
inputs are both supported, and the graph computes in the input's type, as the
estimators do on the CPU.

Outputs, by estimator:

- ``DeepAutoencoder``, ``VariationalAutoencoder``: ``variable``, the
  ``transform`` output, shape ``(N, n_components)``.
- ``DeepEmbeddingClusterer``: ``label`` (int64, ``(N,)``, ``predict``) and
  ``probabilities`` (``(N, n_clusters)``, ``predict_proba``).
- ``AutoencoderOutlierDetector``: ``label`` (int64, ``(N,)``, +1 / -1,
  ``predict``) and ``scores`` (``(N,)``, ``decision_function``).

Registering needs skl2onnx (the ``onnx`` extra); :mod:`sk_deepunsup.onnx`
registers the converters.
"""

from __future__ import annotations

import math

import numpy as np

try:  # optional: the "onnx" extra (the doctest collector imports this module too)
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
from ._nn import MLP
from ._outlier import AutoencoderOutlierDetector
from ._vae import VariationalAutoencoder

__all__ = ["register_converters"]

#: Lowest ONNX opset the converters emit (ReduceSum takes ``axes`` as an input).
MIN_OPSET = 13


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

    def softplus(self, x: str) -> str:
        """``log(1 + exp(x))``, stable: ``relu(x) + log(1 + exp(-|x|))``."""
        neg_abs = self.node("Neg", [self.node("Abs", [x])])
        log_term = self.node("Log", [self.node("Add", [self.node("Exp", [neg_abs]),
                                                         self.scalar(1.0)])])
        return self.node("Add", [self.node("Relu", [x]), log_term])

    def erf(self, x: str) -> str:
        """ONNX Runtime has no float64 Erf: compute it in float32 (error ~1e-7)."""
        if self.dtype == np.float32:
            return self.node("Erf", [x])
        as_float = self.node("Cast", [x], to=onnx_proto.TensorProto.FLOAT)
        return self.node("Cast", [self.node("Erf", [as_float])], to=self.proto)

    def activation(self, x: str, name: str) -> str:
        if name == "identity":
            return x
        if name == "relu":
            return self.node("Relu", [x])
        if name == "tanh":
            return self.node("Tanh", [x])
        if name == "logistic":
            return self.node("Sigmoid", [x])
        if name == "leaky_relu":  # torch's default slope, 0.01 < 1: max(x, 0.01 x)
            return self.node("Max", [x, self.node("Mul", [x, self.scalar(0.01)])])
        if name == "elu":  # x if x > 0 else exp(x) - 1
            positive = self.node("Greater", [x, self.scalar(0.0)])
            expm1 = self.node("Sub", [self.node("Exp", [x]), self.scalar(1.0)])
            return self.node("Where", [positive, x, expm1])
        if name == "gelu":  # exact: 0.5 x (1 + erf(x / sqrt 2))
            erf = self.erf(self.node("Mul", [x, self.scalar(1.0 / math.sqrt(2.0))]))
            half = self.node("Mul", [x, self.scalar(0.5)])
            return self.node("Mul", [half, self.node("Add", [erf, self.scalar(1.0)])])
        raise NotImplementedError(f"activation {name!r} has no ONNX conversion")


def _mlp_layers(mlp):
    """``(weight, bias, activation or None)`` per layer, batch norm folded in."""
    if not isinstance(mlp, MLP):
        raise NotImplementedError(
            f"ONNX export supports the package's MLP networks, not {type(mlp).__name__}."
        )
    layers = []
    last = len(mlp.linears) - 1
    for i, lin in enumerate(mlp.linears):
        w = lin.weight.detach().cpu().double().numpy()
        b = lin.bias.detach().cpu().double().numpy()
        if i < last and mlp.norms is not None:
            norm = mlp.norms[i]
            scale = 1.0 / np.sqrt(norm.running_var.detach().cpu().double().numpy() + norm.eps)
            shift = -norm.running_mean.detach().cpu().double().numpy() * scale
            if norm.affine:
                gamma = norm.weight.detach().cpu().double().numpy()
                beta = norm.bias.detach().cpu().double().numpy()
                scale, shift = scale * gamma, shift * gamma + beta
            w, b = w * scale[:, None], b * scale + shift
        layers.append((w, b, mlp.activation if i < last else None))
    return layers


def _emit_mlp(g: _Graph, mlp, x: str, split: int | None = None):
    """The MLP applied to ``x``; with ``split``, the last layer's output cut in two."""
    layers = _mlp_layers(mlp)
    for w, b, act in layers[:-1]:
        x = g.node("Gemm", [x, g.const(w, "W"), g.const(b, "B")], transB=1)
        x = g.activation(x, act)
    w, b, _ = layers[-1]
    if split is None:
        return g.node("Gemm", [x, g.const(w, "W"), g.const(b, "B")], transB=1)
    return tuple(
        g.node("Gemm", [x, g.const(w[rows], "W"), g.const(b[rows], "B")], transB=1)
        for rows in (slice(0, split), slice(split, None))
    )


def _encoder_nodes(g: _Graph, autoencoder, x: str) -> str:
    """The autoencoder's ``transform``: the encoder (a VAE's posterior mean)."""
    encoder = autoencoder.module_.encoder
    if isinstance(autoencoder, VariationalAutoencoder):
        return _emit_mlp(g, encoder, x, split=autoencoder.n_components)[0]
    return _emit_mlp(g, encoder, x)


# -- converters ------------------------------------------------------------------------


def _convert_autoencoder(scope, operator, container):
    g = _Graph(scope, operator, container)
    out = _encoder_nodes(g, operator.raw_operator, operator.inputs[0].full_name)
    g.node("Identity", [out], output=operator.outputs[0].full_name)


def _convert_clusterer(scope, operator, container):
    g = _Graph(scope, operator, container)
    model = operator.raw_operator
    z = _encoder_nodes(g, model.autoencoder_, operator.inputs[0].full_name)
    k, d = model.cluster_centers_.shape
    diff = g.node("Sub", [g.reshape(z, [-1, 1, d]), g.const(model.cluster_centers_, "centers")])
    sq_dist = g.reduce_sum(g.node("Mul", [diff, diff]), 2)  # (N, k)
    alpha = float(model.alpha)
    log_kernel = g.node(
        "Log", [g.node("Add", [g.node("Mul", [sq_dist, g.scalar(1.0 / alpha)]), g.scalar(1.0)])]
    )
    logits = g.node("Mul", [log_kernel, g.scalar(-0.5 * (alpha + 1.0))])
    probabilities = g.node("Softmax", [logits], output=operator.outputs[1].full_name, axis=1)
    g.node("ArgMax", [probabilities], output=operator.outputs[0].full_name, axis=1, keepdims=0)


def _reconstruct(g: _Graph, autoencoder, x: str) -> str:
    """``inverse_transform(transform(x))``: the decoder's output in data space."""
    out = _emit_mlp(g, autoencoder.module_.decoder, _encoder_nodes(g, autoencoder, x))
    if autoencoder.loss == "bce":
        return g.node("Sigmoid", [out])
    if autoencoder.loss == "multinomial":
        return g.node("Softmax", [out], axis=1)
    return out


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
    residual = g.node("Abs", [g.node("Sub", [x, _reconstruct(g, model.autoencoder_, x)])])
    scaled = g.node("Mul", [residual, g.const(1.0 / model.residual_scale_, "inv_scale")])
    outlyingness = g.node("Mul", [g.reduce_sum(scaled, 1), g.scalar(1.0 / model.part_scale_[0])])
    if model._has_distance_part():
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
    DeepEmbeddingClusterer: "SkDeepUnsupDeepEmbeddingClusterer",
    AutoencoderOutlierDetector: "SkDeepUnsupAutoencoderOutlierDetector",
}

_CONVERTERS = {
    DeepAutoencoder: (_shape_autoencoder, _convert_autoencoder, _parse_autoencoder),
    VariationalAutoencoder: (_shape_autoencoder, _convert_autoencoder, _parse_autoencoder),
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
