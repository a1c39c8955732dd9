"""Whole models for the ``models`` benchmark family, each written three ways.

* ResNet (torchvision's ``BasicBlock`` ResNet-18 and ``Bottleneck`` ResNet-50,
  v1.5: stride on the 3x3 conv), with a CIFAR stem (3x3 conv, no max-pool, for
  32x32 inputs) or the ImageNet stem (7x7/2 conv + 3x3/2 max-pool, for 224x224);
  ``width`` scales every stage (64 = the real model; small widths for tests).
* A decoder-only Transformer LM: token + learned position embeddings, a stack of
  pre-norm encoder layers (GELU, no dropout) under a causal mask, a final
  LayerNorm and a linear head.
* An LSTM LM: embedding, stacked LSTM (batch-first), linear head.
* MobileNetV2 (torchvision's: inverted residual blocks of 1x1 expansion,
  3x3 depthwise and 1x1 projection convolutions with BatchNorm and ReLU6),
  without the classifier's dropout; ``settings`` (expansion, channels, blocks,
  stride per stage) and ``width_mult`` shrink it for tests.

Three sections, one per framework:

* **jaxlayers** — ``jaxlayers.nn`` modules in torch's layout (NCHW images,
  ``(N, S)`` token ids); submodules named as the torch twin's attributes, so
  ``jaxlayers.interop.state_dict_to_variables(torch_model.state_dict())`` is the
  jaxlayers model's variables.
* **flax.linen** — how one would write the same architecture with flax.linen's
  own layers: NHWC images, ``nn.Conv``/``nn.BatchNorm``/``nn.max_pool``,
  ``nn.MultiHeadDotProductAttention`` + MLP + ``nn.LayerNorm``,
  ``nn.RNN(nn.OptimizedLSTMCell)``.  Same shapes and parameter counts, flax's
  own names and initialisers (flax's LSTM cell has one bias per gate where
  torch has two).
* **torch** — plain ``torch.nn`` (what torchvision's ResNets are, rebuilt here:
  torchvision is not a dependency).

The ResNets also have a fourth twin, **NNX** (``NNXResNet``): ``jaxlayers.nnx``
modules assigned as the torch model's attributes, so
``model.load_state_dict(torch_model.state_dict())`` loads it (``bench_nnx``).

Call conventions: jaxlayers and flax models are called as
``model.apply(variables, x, train=...)`` (ResNets with
``mutable=["batch_stats"]`` when training) and return logits; torch models as
``model(x)`` (NNX models too: ``model.train()`` / ``model.eval()`` set the mode).
Images: jaxlayers/torch/NNX ``(N, 3, H, W)``, flax ``(N, H, W, 3)``.
Token ids: ``(N, S)`` integers; logits ``(N, S, vocab)``.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as fnn
import jax.numpy as jnp
import numpy as np
import torch
from torch import nn as tnn

from flax import nnx as fnnx

from jaxlayers import functional as F
from jaxlayers import nn
from jaxlayers import nnx as jnnx

__all__ = [
    "RESNET_LAYERS",
    # jaxlayers
    "JLBasicBlock", "JLBottleneck", "JLResNet", "JLTransformerLM", "JLLSTMLM", "JLInvertedResidual",
    "JLMobileNetV2",
    # flax.linen
    "FlaxBasicBlock", "FlaxBottleneck", "FlaxResNet", "FlaxEncoderBlock", "FlaxTransformerLM", "FlaxLSTMLM",
    "FlaxInvertedResidual", "FlaxMobileNetV2",
    # jaxlayers.nnx
    "NNXBasicBlock", "NNXBottleneck", "NNXResNet",
    # torch
    "TorchBasicBlock", "TorchBottleneck", "TorchResNet", "TorchTransformerLM", "TorchLSTMLM",
    "TorchInvertedResidual", "TorchMobileNetV2",
    # builders
    "resnet", "transformer_lm", "lstm_lm", "mobilenet_v2", "causal_mask", "MOBILENET_V2_SETTINGS",
]

#: depth -> (block kind, blocks per stage), as torchvision.
RESNET_LAYERS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3))}
_EXPANSION = {"basic": 1, "bottleneck": 4}


class _ResNetFields(fnn.Module):
    """The ResNet's hyperparameters and defaults, one set for the jaxlayers and flax models."""

    block: str = "basic"
    layers: Sequence[int] = (2, 2, 2, 2)
    num_classes: int = 10
    width: int = 64
    small_input: bool = True


class _TransformerLMFields(fnn.Module):
    """The Transformer LM's hyperparameters and defaults (jaxlayers and flax)."""

    vocab_size: int = 1000
    d_model: int = 256
    nhead: int = 4
    num_layers: int = 4
    dim_feedforward: int = 1024
    max_len: int = 128


class _LSTMLMFields(fnn.Module):
    """The LSTM LM's hyperparameters and defaults (jaxlayers and flax)."""

    vocab_size: int = 1000
    embed_dim: int = 128
    hidden_size: int = 512
    num_layers: int = 2


#: MobileNetV2's stages (torchvision): expansion t, output channels c, blocks n, first stride s.
MOBILENET_V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                         (6, 160, 3, 2), (6, 320, 1, 1))


def _divisible(v: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible``: round to a multiple of 8, never below 90 % of ``v``."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _mobilenet_v2_plan(width_mult: float, settings: Sequence) -> tuple[int, list, int]:
    """(stem channels, [(in, out, stride, expansion)] per block, last channels)."""
    stem = inp = _divisible(32 * width_mult)
    blocks = []
    for t, c, n, s in settings:
        out = _divisible(c * width_mult)
        for i in range(n):
            blocks.append((inp, out, s if i == 0 else 1, t))
            inp = out
    return stem, blocks, _divisible(1280 * max(1.0, width_mult))


class _MobileNetV2Fields(fnn.Module):
    """MobileNetV2's hyperparameters and defaults (jaxlayers and flax)."""

    num_classes: int = 1000
    width_mult: float = 1.0
    settings: Sequence = MOBILENET_V2_SETTINGS


def causal_mask(seq_len: int) -> np.ndarray:
    """torch's boolean attention mask: ``True`` above the diagonal = may not attend."""
    return np.triu(np.ones((seq_len, seq_len), bool), k=1)


# =====================================================================================
# jaxlayers (torch layout, torch names)
# =====================================================================================


def _jl_downsample(inplanes: int, outplanes: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, stride, bias=False), nn.BatchNorm2d(outplanes),
                         name="downsample")


class JLBasicBlock(fnn.Module):
    """torchvision's ``BasicBlock``: 3x3 conv-BN-ReLU, 3x3 conv-BN, + shortcut, ReLU."""

    inplanes: int
    planes: int
    stride: int = 1

    @fnn.compact
    def __call__(self, x: Any, *, train: bool) -> Any:
        out = nn.Conv2d(self.inplanes, self.planes, 3, self.stride, 1, bias=False, name="conv1")(x)
        out = F.relu(nn.BatchNorm2d(self.planes, name="bn1")(out, train=train))
        out = nn.Conv2d(self.planes, self.planes, 3, 1, 1, bias=False, name="conv2")(out)
        out = nn.BatchNorm2d(self.planes, name="bn2")(out, train=train)
        if self.stride != 1 or self.inplanes != self.planes:
            x = _jl_downsample(self.inplanes, self.planes, self.stride)(x, train=train)
        return F.relu(out + x)


class JLBottleneck(fnn.Module):
    """torchvision's ``Bottleneck`` (v1.5): 1x1, 3x3 (strided), 1x1 (x4 channels) + shortcut."""

    inplanes: int
    planes: int
    stride: int = 1

    @fnn.compact
    def __call__(self, x: Any, *, train: bool) -> Any:
        p, out_c = self.planes, self.planes * 4
        out = F.relu(nn.BatchNorm2d(p, name="bn1")(nn.Conv2d(self.inplanes, p, 1, bias=False, name="conv1")(x),
                                                   train=train))
        out = nn.Conv2d(p, p, 3, self.stride, 1, bias=False, name="conv2")(out)
        out = F.relu(nn.BatchNorm2d(p, name="bn2")(out, train=train))
        out = nn.BatchNorm2d(out_c, name="bn3")(nn.Conv2d(p, out_c, 1, bias=False, name="conv3")(out), train=train)
        if self.stride != 1 or self.inplanes != out_c:
            x = _jl_downsample(self.inplanes, out_c, self.stride)(x, train=train)
        return F.relu(out + x)


class JLResNet(_ResNetFields):
    """ResNet from ``jaxlayers.nn`` on NCHW input; variables = the torch twin's ``state_dict``."""

    @fnn.compact
    def __call__(self, x: Any, *, train: bool) -> Any:
        w = self.width
        if self.small_input:
            x = nn.Conv2d(3, w, 3, 1, 1, bias=False, name="conv1")(x)
        else:
            x = nn.Conv2d(3, w, 7, 2, 3, bias=False, name="conv1")(x)
        x = F.relu(nn.BatchNorm2d(w, name="bn1")(x, train=train))
        if not self.small_input:
            x = nn.MaxPool2d(3, 2, 1)(x)
        block = JLBasicBlock if self.block == "basic" else JLBottleneck
        inplanes = w
        for i, n in enumerate(self.layers):
            planes = w * 2 ** i
            blocks = []
            for j in range(n):
                blocks.append(block(inplanes, planes, 2 if (j == 0 and i > 0) else 1))
                inplanes = planes * _EXPANSION[self.block]
            x = nn.Sequential(*blocks, name=f"layer{i + 1}")(x, train=train)
        x = nn.AdaptiveAvgPool2d(1)(x).reshape(x.shape[0], -1)
        return nn.Linear(inplanes, self.num_classes, name="fc")(x)


class JLTransformerLM(_TransformerLMFields):
    """Causal Transformer LM from ``jaxlayers.nn`` (``TransformerEncoder`` of pre-norm layers)."""

    def setup(self) -> None:
        d = self.d_model
        self.embedding = nn.Embedding(self.vocab_size, d)
        self.pos_embedding = nn.Embedding(self.max_len, d)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d, self.nhead, self.dim_feedforward, 0.0, "gelu", batch_first=True,
                                       norm_first=True),
            self.num_layers, nn.LayerNorm(d))
        self.head = nn.Linear(d, self.vocab_size)

    def __call__(self, ids: Any, *, train: bool) -> Any:
        s = ids.shape[1]
        x = self.embedding(ids) + self.pos_embedding(jnp.arange(s))
        x = self.encoder(x, mask=causal_mask(s), is_causal=True, train=train)
        return self.head(x)


class JLLSTMLM(_LSTMLMFields):
    """LSTM LM from ``jaxlayers.nn``: ``Embedding -> LSTM(batch_first) -> Linear``."""

    def setup(self) -> None:
        self.embedding = nn.Embedding(self.vocab_size, self.embed_dim)
        self.lstm = nn.LSTM(self.embed_dim, self.hidden_size, self.num_layers, batch_first=True)
        self.head = nn.Linear(self.hidden_size, self.vocab_size)

    def __call__(self, ids: Any, *, train: bool) -> Any:
        out, _ = self.lstm(self.embedding(ids), train=train)
        return self.head(out)


class JLInvertedResidual(fnn.Module):
    """MobileNetV2's block: [1x1 expand-BN-ReLU6], 3x3 depthwise-BN-ReLU6, 1x1 project-BN, [+ x]."""

    inp: int
    oup: int
    stride: int
    expand: int

    @fnn.compact
    def __call__(self, x: Any, *, train: bool) -> Any:
        hidden = self.inp * self.expand
        layers = []
        if self.expand != 1:
            layers += [nn.Conv2d(self.inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [nn.Conv2d(hidden, hidden, 3, self.stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(), nn.Conv2d(hidden, self.oup, 1, bias=False), nn.BatchNorm2d(self.oup)]
        out = nn.Sequential(*layers, name="conv")(x, train=train)
        return x + out if self.stride == 1 and self.inp == self.oup else out


class JLMobileNetV2(_MobileNetV2Fields):
    """MobileNetV2 from ``jaxlayers.nn`` on NCHW input; variables = the torch twin's ``state_dict``."""

    @fnn.compact
    def __call__(self, x: Any, *, train: bool) -> Any:
        stem, blocks, last = _mobilenet_v2_plan(self.width_mult, self.settings)
        layers = [nn.Sequential(nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU6())]
        layers += [JLInvertedResidual(*b) for b in blocks]
        layers += [nn.Sequential(nn.Conv2d(blocks[-1][1], last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6())]
        x = nn.Sequential(*layers, name="features")(x, train=train)
        x = nn.AdaptiveAvgPool2d(1)(x).reshape(x.shape[0], -1)
        return nn.Linear(last, self.num_classes, name="classifier")(x)


# =====================================================================================
# flax.linen (idiomatic: NHWC, flax's own layers and names)
# =====================================================================================


def _flax_bn(train: bool, name: str | None = None) -> fnn.BatchNorm:
    # torch's momentum 0.1 is flax's 0.9 (weight of the old running value)
    return fnn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


def _flax_shortcut(x: Any, out_c: int, stride: int, train: bool) -> Any:
    if stride != 1 or x.shape[-1] != out_c:
        x = fnn.Conv(out_c, (1, 1), (stride, stride), use_bias=False)(x)
        x = _flax_bn(train)(x)
    return x


class FlaxBasicBlock(fnn.Module):
    planes: int
    stride: int = 1

    @fnn.compact
    def __call__(self, x: Any, train: bool) -> Any:
        s = (self.stride, self.stride)
        out = fnn.relu(_flax_bn(train)(fnn.Conv(self.planes, (3, 3), s, padding=1, use_bias=False)(x)))
        out = _flax_bn(train)(fnn.Conv(self.planes, (3, 3), padding=1, use_bias=False)(out))
        return fnn.relu(out + _flax_shortcut(x, self.planes, self.stride, train))


class FlaxBottleneck(fnn.Module):
    planes: int
    stride: int = 1

    @fnn.compact
    def __call__(self, x: Any, train: bool) -> Any:
        s = (self.stride, self.stride)
        out = fnn.relu(_flax_bn(train)(fnn.Conv(self.planes, (1, 1), use_bias=False)(x)))
        out = fnn.relu(_flax_bn(train)(fnn.Conv(self.planes, (3, 3), s, padding=1, use_bias=False)(out)))
        out = _flax_bn(train)(fnn.Conv(self.planes * 4, (1, 1), use_bias=False)(out))
        return fnn.relu(out + _flax_shortcut(x, self.planes * 4, self.stride, train))


class FlaxResNet(_ResNetFields):
    """The same ResNet with flax.linen's layers on NHWC input."""

    @fnn.compact
    def __call__(self, x: Any, train: bool) -> Any:
        w = self.width
        if self.small_input:
            x = fnn.Conv(w, (3, 3), padding=1, use_bias=False)(x)
        else:
            x = fnn.Conv(w, (7, 7), (2, 2), padding=3, use_bias=False)(x)
        x = fnn.relu(_flax_bn(train)(x))
        if not self.small_input:
            x = fnn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        block = FlaxBasicBlock if self.block == "basic" else FlaxBottleneck
        for i, n in enumerate(self.layers):
            for j in range(n):
                x = block(w * 2 ** i, 2 if (j == 0 and i > 0) else 1)(x, train)
        x = jnp.mean(x, axis=(1, 2))
        return fnn.Dense(self.num_classes)(x)


class FlaxInvertedResidual(fnn.Module):
    inp: int
    oup: int
    stride: int
    expand: int

    @fnn.compact
    def __call__(self, x: Any, train: bool) -> Any:
        hidden = self.inp * self.expand
        h = x
        if self.expand != 1:
            h = fnn.relu6(_flax_bn(train)(fnn.Conv(hidden, (1, 1), use_bias=False)(h)))
        h = fnn.Conv(hidden, (3, 3), (self.stride, self.stride), padding=1, feature_group_count=hidden,
                     use_bias=False)(h)
        h = fnn.relu6(_flax_bn(train)(h))
        h = _flax_bn(train)(fnn.Conv(self.oup, (1, 1), use_bias=False)(h))
        return x + h if self.stride == 1 and self.inp == self.oup else h


class FlaxMobileNetV2(_MobileNetV2Fields):
    """The same MobileNetV2 with flax.linen's layers on NHWC input."""

    @fnn.compact
    def __call__(self, x: Any, train: bool) -> Any:
        stem, blocks, last = _mobilenet_v2_plan(self.width_mult, self.settings)
        x = fnn.relu6(_flax_bn(train)(fnn.Conv(stem, (3, 3), (2, 2), padding=1, use_bias=False)(x)))
        for b in blocks:
            x = FlaxInvertedResidual(*b)(x, train)
        x = fnn.relu6(_flax_bn(train)(fnn.Conv(last, (1, 1), use_bias=False)(x)))
        return fnn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


class FlaxEncoderBlock(fnn.Module):
    """Pre-norm block: ``x + MHA(LN(x))``, ``x + MLP(LN(x))`` (exact GELU, as torch's ``"gelu"``)."""

    d_model: int
    nhead: int
    dim_feedforward: int

    @fnn.compact
    def __call__(self, x: Any, mask: Any) -> Any:
        h = fnn.LayerNorm(epsilon=1e-5)(x)
        x = x + fnn.MultiHeadDotProductAttention(num_heads=self.nhead, qkv_features=self.d_model,
                                                 out_features=self.d_model, deterministic=True)(h, mask=mask)
        h = fnn.LayerNorm(epsilon=1e-5)(x)
        h = fnn.Dense(self.d_model)(fnn.gelu(fnn.Dense(self.dim_feedforward)(h), approximate=False))
        return x + h


class FlaxTransformerLM(_TransformerLMFields):
    @fnn.compact
    def __call__(self, ids: Any, train: bool) -> Any:
        del train  # no dropout
        s = ids.shape[1]
        x = fnn.Embed(self.vocab_size, self.d_model)(ids) + fnn.Embed(self.max_len, self.d_model)(jnp.arange(s))
        mask = fnn.make_causal_mask(ids)  # (N, 1, S, S), True = may attend
        for _ in range(self.num_layers):
            x = FlaxEncoderBlock(self.d_model, self.nhead, self.dim_feedforward)(x, mask)
        return fnn.Dense(self.vocab_size)(fnn.LayerNorm(epsilon=1e-5)(x))


class FlaxLSTMLM(_LSTMLMFields):
    @fnn.compact
    def __call__(self, ids: Any, train: bool) -> Any:
        del train
        x = fnn.Embed(self.vocab_size, self.embed_dim)(ids)
        for _ in range(self.num_layers):
            x = fnn.RNN(fnn.OptimizedLSTMCell(self.hidden_size))(x)
        return fnn.Dense(self.vocab_size)(x)


# =====================================================================================
# jaxlayers.nnx (stateful modules; attributes named as the torch twin's)
# =====================================================================================


def _basic_block_forward(block: Any, x: Any) -> Any:
    """torchvision's ``BasicBlock.forward`` over a block's attributes (the NNX and torch twins)."""
    out = block.relu(block.bn1(block.conv1(x)))
    out = block.bn2(block.conv2(out))
    identity = x if block.downsample is None else block.downsample(x)
    return block.relu(out + identity)


def _bottleneck_forward(block: Any, x: Any) -> Any:
    """torchvision's ``Bottleneck.forward`` over a block's attributes (the NNX and torch twins)."""
    out = block.relu(block.bn1(block.conv1(x)))
    out = block.relu(block.bn2(block.conv2(out)))
    out = block.bn3(block.conv3(out))
    identity = x if block.downsample is None else block.downsample(x)
    return block.relu(out + identity)


def _nnx_downsample(inplanes: int, outplanes: int, stride: int, kw: dict) -> jnnx.Sequential:
    return jnnx.Sequential(jnnx.Conv2d(inplanes, outplanes, 1, stride, bias=False, **kw),
                           jnnx.BatchNorm2d(outplanes, **kw))


class NNXBasicBlock(jnnx.Module):
    """torchvision's ``BasicBlock`` from ``jaxlayers.nnx`` layers (``TorchBasicBlock``'s attributes)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, *, rngs: fnnx.Rngs,
                 param_dtype: Any = jnp.float32) -> None:
        kw = dict(rngs=rngs, param_dtype=param_dtype)
        self.conv1 = jnnx.Conv2d(inplanes, planes, 3, stride, 1, bias=False, **kw)
        self.bn1 = jnnx.BatchNorm2d(planes, **kw)
        self.relu = jnnx.ReLU()
        self.conv2 = jnnx.Conv2d(planes, planes, 3, 1, 1, bias=False, **kw)
        self.bn2 = jnnx.BatchNorm2d(planes, **kw)
        self.downsample = (_nnx_downsample(inplanes, planes, stride, kw)
                           if stride != 1 or inplanes != planes else None)

    def __call__(self, x: Any) -> Any:
        return _basic_block_forward(self, x)


class NNXBottleneck(jnnx.Module):
    """torchvision's ``Bottleneck`` (v1.5) from ``jaxlayers.nnx`` layers (``TorchBottleneck``'s attributes)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, *, rngs: fnnx.Rngs,
                 param_dtype: Any = jnp.float32) -> None:
        kw = dict(rngs=rngs, param_dtype=param_dtype)
        out_c = planes * 4
        self.conv1 = jnnx.Conv2d(inplanes, planes, 1, bias=False, **kw)
        self.bn1 = jnnx.BatchNorm2d(planes, **kw)
        self.conv2 = jnnx.Conv2d(planes, planes, 3, stride, 1, bias=False, **kw)
        self.bn2 = jnnx.BatchNorm2d(planes, **kw)
        self.conv3 = jnnx.Conv2d(planes, out_c, 1, bias=False, **kw)
        self.bn3 = jnnx.BatchNorm2d(out_c, **kw)
        self.relu = jnnx.ReLU()
        self.downsample = (_nnx_downsample(inplanes, out_c, stride, kw)
                           if stride != 1 or inplanes != out_c else None)

    def __call__(self, x: Any) -> Any:
        return _bottleneck_forward(self, x)


class NNXResNet(jnnx.Module):
    """``TorchResNet`` from ``jaxlayers.nnx`` layers: NCHW input, ``state_dict()`` keys = torch's.

    Same arguments as ``TorchResNet`` plus ``rngs`` and ``param_dtype`` (of the parameters
    and running statistics; ``load_state_dict`` casts to it); in training mode after construction
    (BatchNorm in batch-statistics mode, running statistics updated in place).
    """

    def __init__(self, block: str = "basic", layers: Sequence[int] = (2, 2, 2, 2), num_classes: int = 10,
                 width: int = 64, small_input: bool = True, *, rngs: fnnx.Rngs,
                 param_dtype: Any = jnp.float32) -> None:
        kw = dict(rngs=rngs, param_dtype=param_dtype)
        w = width
        if small_input:
            self.conv1 = jnnx.Conv2d(3, w, 3, 1, 1, bias=False, **kw)
        else:
            self.conv1 = jnnx.Conv2d(3, w, 7, 2, 3, bias=False, **kw)
        self.bn1 = jnnx.BatchNorm2d(w, **kw)
        self.relu = jnnx.ReLU()
        self.maxpool = jnnx.Identity() if small_input else jnnx.MaxPool2d(3, 2, 1)
        cls = NNXBasicBlock if block == "basic" else NNXBottleneck
        inplanes = w
        for i, n in enumerate(layers):
            blocks = []
            for j in range(n):
                blocks.append(cls(inplanes, w * 2 ** i, 2 if (j == 0 and i > 0) else 1, **kw))
                inplanes = w * 2 ** i * _EXPANSION[block]
            setattr(self, f"layer{i + 1}", jnnx.Sequential(*blocks))
        self.num_stages = len(layers)
        self.avgpool = jnnx.AdaptiveAvgPool2d(1)
        self.fc = jnnx.Linear(inplanes, num_classes, **kw)

    def __call__(self, x: Any) -> Any:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        x = self.avgpool(x)
        return self.fc(x.reshape(x.shape[0], -1))


# =====================================================================================
# torch (eager torch.nn; attribute names as torchvision / torch.nn)
# =====================================================================================


def _torch_downsample(inplanes: int, outplanes: int, stride: int) -> tnn.Sequential:
    return tnn.Sequential(tnn.Conv2d(inplanes, outplanes, 1, stride, bias=False), tnn.BatchNorm2d(outplanes))


class TorchBasicBlock(tnn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.relu = tnn.ReLU(inplace=True)
        self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.downsample = _torch_downsample(inplanes, planes, stride) if stride != 1 or inplanes != planes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _basic_block_forward(self, x)


class TorchBottleneck(tnn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_c = planes * 4
        self.conv1 = tnn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.conv2 = tnn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.conv3 = tnn.Conv2d(planes, out_c, 1, bias=False)
        self.bn3 = tnn.BatchNorm2d(out_c)
        self.relu = tnn.ReLU(inplace=True)
        self.downsample = _torch_downsample(inplanes, out_c, stride) if stride != 1 or inplanes != out_c else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _bottleneck_forward(self, x)


class TorchResNet(tnn.Module):
    def __init__(self, block: str = "basic", layers: Sequence[int] = (2, 2, 2, 2), num_classes: int = 10,
                 width: int = 64, small_input: bool = True) -> None:
        super().__init__()
        w = width
        if small_input:
            self.conv1 = tnn.Conv2d(3, w, 3, 1, 1, bias=False)
        else:
            self.conv1 = tnn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = tnn.BatchNorm2d(w)
        self.relu = tnn.ReLU(inplace=True)
        self.maxpool = tnn.Identity() if small_input else tnn.MaxPool2d(3, 2, 1)
        cls = TorchBasicBlock if block == "basic" else TorchBottleneck
        inplanes = w
        for i, n in enumerate(layers):
            blocks = []
            for j in range(n):
                blocks.append(cls(inplanes, w * 2 ** i, 2 if (j == 0 and i > 0) else 1))
                inplanes = w * 2 ** i * _EXPANSION[block]
            setattr(self, f"layer{i + 1}", tnn.Sequential(*blocks))
        self.num_stages = len(layers)
        self.avgpool = tnn.AdaptiveAvgPool2d(1)
        self.fc = tnn.Linear(inplanes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TorchInvertedResidual(tnn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = inp * expand
        layers: list = []
        if expand != 1:
            layers += [tnn.Conv2d(inp, hidden, 1, bias=False), tnn.BatchNorm2d(hidden), tnn.ReLU6()]
        layers += [tnn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), tnn.BatchNorm2d(hidden),
                   tnn.ReLU6(), tnn.Conv2d(hidden, oup, 1, bias=False), tnn.BatchNorm2d(oup)]
        self.conv = tnn.Sequential(*layers)
        self.use_res = stride == 1 and inp == oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class TorchMobileNetV2(tnn.Module):
    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0,
                 settings: Sequence = MOBILENET_V2_SETTINGS) -> None:
        super().__init__()
        stem, blocks, last = _mobilenet_v2_plan(width_mult, settings)
        layers = [tnn.Sequential(tnn.Conv2d(3, stem, 3, 2, 1, bias=False), tnn.BatchNorm2d(stem), tnn.ReLU6())]
        layers += [TorchInvertedResidual(*b) for b in blocks]
        layers += [tnn.Sequential(tnn.Conv2d(blocks[-1][1], last, 1, bias=False), tnn.BatchNorm2d(last),
                                  tnn.ReLU6())]
        self.features = tnn.Sequential(*layers)
        self.classifier = tnn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


class TorchTransformerLM(tnn.Module):
    def __init__(self, vocab_size: int = 1000, d_model: int = 256, nhead: int = 4, num_layers: int = 4,
                 dim_feedforward: int = 1024, max_len: int = 128) -> None:
        super().__init__()
        self.embedding = tnn.Embedding(vocab_size, d_model)
        self.pos_embedding = tnn.Embedding(max_len, d_model)
        layer = tnn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, 0.0, "gelu", batch_first=True,
                                            norm_first=True)
        self.encoder = tnn.TransformerEncoder(layer, num_layers, tnn.LayerNorm(d_model), enable_nested_tensor=False)
        self.head = tnn.Linear(d_model, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        s = ids.shape[1]
        x = self.embedding(ids) + self.pos_embedding(torch.arange(s, device=ids.device))
        x = self.encoder(x, mask=torch.from_numpy(causal_mask(s)).to(ids.device), is_causal=True)
        return self.head(x)


class TorchLSTMLM(tnn.Module):
    def __init__(self, vocab_size: int = 1000, embed_dim: int = 128, hidden_size: int = 512,
                 num_layers: int = 2) -> None:
        super().__init__()
        self.embedding = tnn.Embedding(vocab_size, embed_dim)
        self.lstm = tnn.LSTM(embed_dim, hidden_size, num_layers, batch_first=True)
        self.head = tnn.Linear(hidden_size, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embedding(ids))[0])


# =====================================================================================
# builders: one architecture, three frameworks
# =====================================================================================

_FRAMEWORKS = ("jaxlayers", "flax", "torch")


def _pick(framework: str, classes: tuple, **kw: Any) -> Any:
    if framework not in _FRAMEWORKS:
        raise ValueError(f"models: framework must be one of {_FRAMEWORKS}, got {framework!r}")
    return classes[_FRAMEWORKS.index(framework)](**kw)


def resnet(framework: str, depth: int = 18, num_classes: int = 10, width: int = 64, small_input: bool = True,
           rngs: fnnx.Rngs | None = None, param_dtype: Any = jnp.float32) -> Any:
    """ResNet-``depth`` (18, 34, 50) for ``framework`` in {"jaxlayers", "flax", "torch", "nnx"}.

    ``small_input``: CIFAR stem (3x3 conv, no max-pool); else the ImageNet stem.
    ``rngs``, ``param_dtype``: the NNX model's initialisation stream (default ``nnx.Rngs(0)``)
    and variable dtype (unused by the other frameworks).
    """
    if depth not in RESNET_LAYERS:
        raise ValueError(f"resnet: depth must be one of {sorted(RESNET_LAYERS)}, got {depth!r}")
    block, layers = RESNET_LAYERS[depth]
    kw = dict(block=block, layers=layers, num_classes=num_classes, width=width, small_input=small_input)
    if framework == "nnx":
        return NNXResNet(**kw, rngs=fnnx.Rngs(0) if rngs is None else rngs, param_dtype=param_dtype)
    return _pick(framework, (JLResNet, FlaxResNet, TorchResNet), **kw)


def transformer_lm(framework: str, **kw: Any) -> Any:
    """Causal Transformer LM (``vocab_size, d_model, nhead, num_layers, dim_feedforward, max_len``)."""
    return _pick(framework, (JLTransformerLM, FlaxTransformerLM, TorchTransformerLM), **kw)


def lstm_lm(framework: str, **kw: Any) -> Any:
    """LSTM LM (``vocab_size, embed_dim, hidden_size, num_layers``)."""
    return _pick(framework, (JLLSTMLM, FlaxLSTMLM, TorchLSTMLM), **kw)


def mobilenet_v2(framework: str, **kw: Any) -> Any:
    """MobileNetV2 (``num_classes, width_mult, settings``) for "jaxlayers", "flax" or "torch"."""
    return _pick(framework, (JLMobileNetV2, FlaxMobileNetV2, TorchMobileNetV2), **kw)
