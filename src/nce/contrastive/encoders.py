r"""Small encoders for small inputs: a convolutional one for images, an MLP for vectors.

In two-view contrastive learning the encoder :math:`f` gives the representation :math:`h = f(x)`
that downstream tasks use, and a projection head :math:`g` maps it to the space where the loss
compares views, :math:`z = g(h)` (SimCLR, Chen et al. 2020, arXiv:2002.05709). SimCLR found that
:math:`h` is the better representation: the loss makes :math:`z` invariant to the augmentations,
and the head absorbs that loss of information. The evaluation therefore probes :math:`h`.

Every encoder here exposes ``out_features`` (the size of :math:`h`) so a head can be sized to it.
"""

from __future__ import annotations

import torch
from torch import nn

from nce._validation import check_int

__all__ = ["ConvEncoder", "MLPEncoder", "ProjectionHead"]


class ConvEncoder(nn.Module):
    r"""Three 3x3 convolutions with batch norm, a 2x2 max-pool and global average pooling.

    ``conv(c→w) → conv(w→2w) → maxpool → conv(2w→4w) → mean over space``: a few tens of thousands
    of parameters, enough for 8x8 digits, trains in seconds on a CPU:
    :math:`h = \mathrm{mean}_{ij}\, c_3(\mathrm{maxpool}(c_2(c_1(x))))_{ij}` with
    :math:`c_k = \mathrm{ReLU} \circ \mathrm{BN} \circ \mathrm{conv}_{3 \times 3}`.

    Args:
        in_channels: C, channels of the input images.
        width: w, channels of the first convolution.

    Shape:
        - x: (N, C, H, W), or (N, H, W) when ``in_channels == 1``
        - output: (N, 4w)

    Example:
        >>> ConvEncoder(width=8)(torch.rand(5, 1, 8, 8)).shape
        torch.Size([5, 32])
    """

    def __init__(self, in_channels: int = 1, width: int = 32):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, minimum=1)
        w = check_int("width", width, minimum=1)
        self.out_features = 4 * w

        def block(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.net = nn.Sequential(
            *block(in_channels, w),
            *block(w, 2 * w),
            nn.MaxPool2d(2),
            *block(2 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The representations h (N, 4w) of the images x (N, C, H, W)."""
        if x.dim() == 3 and self.in_channels == 1:
            x = x.unsqueeze(1)
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        return self.net(x)


class MLPEncoder(nn.Module):
    r"""A multilayer perceptron for vectors: ``Linear → BatchNorm → ReLU`` blocks,
    :math:`h_{l+1} = \mathrm{ReLU}(\mathrm{BN}(W_l h_l + b_l))` with :math:`h_0 = x`.

    Args:
        in_features: D, size of the input vectors.
        hidden: sizes of the hidden layers; the last one is the representation size.

    Shape:
        - x: (N, D), or (N, ...) flattened to (N, D)
        - output: (N, hidden[-1])

    Example:
        >>> MLPEncoder(64, (128, 64))(torch.rand(5, 64)).shape
        torch.Size([5, 64])
    """

    def __init__(self, in_features: int, hidden: tuple[int, ...] = (256, 128)):
        super().__init__()
        self.in_features = check_int("in_features", in_features, minimum=1)
        hidden = tuple(hidden)
        if not hidden:
            raise ValueError("hidden must name at least one layer size, got ()")
        layers, width = [], in_features
        for i, h in enumerate(hidden):
            check_int(f"hidden[{i}]", h, minimum=1)
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU()]
            width = h
        self.out_features = width
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The representations (N, hidden[-1]) of the vectors x (N, D)."""
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"x must have {self.in_features} features per sample, got {x.shape[1]}"
            )
        return self.net(x)


class ProjectionHead(nn.Module):
    r"""SimCLR's projection head :math:`g(h) = W_2\,\mathrm{ReLU}(\mathrm{BN}(W_1 h))`.

    Args:
        in_features: size of the representation h.
        hidden: size of the hidden layer.
        out_features: D, size of the embedding z the loss compares.

    Shape:
        - h: (N, in_features); output: (N, D)

    Example:
        >>> ProjectionHead(32, 64, 16)(torch.rand(5, 32)).shape
        torch.Size([5, 16])
    """

    def __init__(self, in_features: int, hidden: int = 128, out_features: int = 64):
        super().__init__()
        check_int("in_features", in_features, minimum=1)
        check_int("hidden", hidden, minimum=1)
        check_int("out_features", out_features, minimum=1)
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, out_features),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """The embeddings z = g(h), (N, D), of the representations h (N, in_features)."""
        return self.net(h)
