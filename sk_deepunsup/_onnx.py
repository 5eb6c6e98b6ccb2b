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
import torch

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
from ._nn.losses import posterior_draws
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


def _encode(g: _Graph, autoencoder, x: str) -> str:
    """The autoencoder's ``transform``: the encoder (a VAE's posterior mean)."""
    encoder = autoencoder.module_.encoder
    if isinstance(autoencoder, VariationalAutoencoder):
        return _emit_mlp(g, encoder, x, split=autoencoder.n_components)[0]
    return _emit_mlp(g, encoder, x)


def _mean_over_features(g: _Graph, values: str, n_features: int, axis: int = 1) -> str:
    return g.node("Mul", [g.reduce_sum(values, axis), g.scalar(1.0 / n_features)])


def _bernoulli_log_lik(g: _Graph, x: str, logits: str) -> str:
    """Elementwise ``x * l - softplus(l)``, the negative BCE with logits."""
    return g.node("Sub", [g.node("Mul", [x, logits]), g.softplus(logits)])


def _score_samples(g: _Graph, autoencoder, x: str) -> str:
    """The autoencoder's ``score_samples`` (negative error or ELBO), shape (N,)."""
    n_features = autoencoder.n_features_in_
    if isinstance(autoencoder, VariationalAutoencoder):
        return _elbo(g, autoencoder, x)
    module = autoencoder.module_
    out = _emit_mlp(g, module.decoder, _emit_mlp(g, module.encoder, x))
    if autoencoder.loss == "bce":
        return _mean_over_features(g, _bernoulli_log_lik(g, x, out), n_features)
    diff = g.node("Sub", [out, x])
    sq = g.node("Mul", [diff, diff])
    return g.node("Neg", [_mean_over_features(g, sq, n_features)])


def _elbo(g: _Graph, vae, x: str) -> str:
    """The VAE's ELBO with the same fixed antithetic draws as the estimator."""
    module = vae.module_
    k, n_features = vae.n_components, vae.n_features_in_
    mu, logvar = _emit_mlp(g, module.encoder, x, split=k)
    logvar = g.node("Clip", [logvar, g.scalar(-30.0), g.scalar(20.0)])
    std = g.node("Exp", [g.node("Mul", [logvar, g.scalar(0.5)])])
    eps = posterior_draws(torch.zeros(1, k, dtype=torch.float64),
                          torch.zeros(1, k, dtype=torch.float64))  # (D, 1, k)
    n_draws = eps.shape[0]
    eps_name = g.const(eps.numpy(), "eps")
    z = g.node("Add", [mu, g.node("Mul", [std, eps_name])])  # (D, N, k)
    out = _emit_mlp(g, module.decoder, g.reshape(z, [-1, k]))
    out = g.reshape(out, [n_draws, -1, n_features])  # (D, N, F)
    if module.likelihood == "bernoulli":
        per_feature = _bernoulli_log_lik(g, x, out)
    else:
        if module.likelihood == "gaussian":
            log_scale = module.log_scale.detach().cpu().double().clamp_min(module.min_log_scale)
        else:
            log_scale = torch.zeros(n_features, dtype=torch.float64)
        log_scale = log_scale.numpy()
        scaled = g.node("Mul", [g.node("Sub", [x, out]), g.const(np.exp(-log_scale), "inv")])
        sq = g.node("Mul", [scaled, scaled])
        offset = g.const(-log_scale - 0.5 * math.log(2 * math.pi), "offset")
        per_feature = g.node("Add", [g.node("Mul", [sq, g.scalar(-0.5)]), offset])
    log_lik = g.reduce_sum(per_feature, 2)  # (D, N)
    mean_log_lik = g.node("Mul", [g.reduce_sum(log_lik, 0), g.scalar(1.0 / n_draws)])
    kl_terms = g.node(
        "Sub",
        [g.node("Add", [g.node("Mul", [mu, mu]), g.node("Exp", [logvar])]),
         g.node("Add", [logvar, g.scalar(1.0)])],
    )
    kl = g.node("Mul", [g.reduce_sum(kl_terms, 1), g.scalar(0.5)])
    return g.node("Sub", [mean_log_lik, kl])


# -- converters ------------------------------------------------------------------------


def _convert_autoencoder(scope, operator, container):
    g = _Graph(scope, operator, container)
    out = _encode(g, operator.raw_operator, operator.inputs[0].full_name)
    g.node("Identity", [out], output=operator.outputs[0].full_name)


def _convert_clusterer(scope, operator, container):
    g = _Graph(scope, operator, container)
    model = operator.raw_operator
    z = _encode(g, model.autoencoder_, operator.inputs[0].full_name)
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


def _convert_detector(scope, operator, container):
    g = _Graph(scope, operator, container)
    model = operator.raw_operator
    score = _score_samples(g, model.autoencoder_, operator.inputs[0].full_name)
    decision = g.node("Sub", [score, g.scalar(model.offset_)],
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
