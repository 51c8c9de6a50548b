r"""Random augmentations for small images and vectors, written with torch ops.

Two-view contrastive learning (SimCLR, Chen et al. 2020, arXiv:2002.05709) defines its positive
pairs by augmentation: two random views :math:`t(x), t'(x)` of one sample must map close together,
views of different samples far apart. What the augmentations leave unchanged is what the encoder
learns to keep, so they are the model's prior on which changes do not alter meaning: for a
handwritten digit, a shift of a pixel, a small rotation, some sensor noise or a missing stroke.

Every transform here is a callable ``t(x, generator=None)`` acting on a batch and drawing its
randomness from ``generator`` only, so a seeded :class:`torch.Generator` makes a whole augmentation
pipeline reproducible, and saving the generator's state (as the trainer's checkpoints do) resumes it
exactly. Each sample of the batch gets its own random draw. Shapes and dtypes are kept.

Shape:
    - images: (N, C, H, W) or (N, H, W)
    - vectors: (N, D) (``GaussianNoise`` and ``RandomMask`` only)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from nce._validation import check_in_range, check_int, check_tensor

__all__ = [
    "Compose",
    "GaussianNoise",
    "RandomAffine",
    "RandomMask",
    "RandomResizedCrop",
    "RandomRotation",
    "RandomShift",
    "digits_augmentation",
]


def _as_images(name: str, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(N, C, H, W) view of an image batch; the flag says whether a channel axis was added."""
    check_tensor(name, x, (3, 4), finite=False)
    if x.dim() == 3:
        return x.unsqueeze(1), True
    return x, False


def _uniform(n: int, low: float, high: float, x: torch.Tensor, generator) -> torch.Tensor:
    u = torch.rand(n, generator=generator, dtype=torch.float64, device=x.device)
    return (low + (high - low) * u).to(x.dtype)


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample ``x`` (N, C, H, W) on the affine grids ``theta`` (N, 2, 3), zero outside."""
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    grid = F.affine_grid(theta.to(work.dtype), list(work.shape), align_corners=False)
    out = F.grid_sample(work, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.to(x.dtype)


class RandomShift:
    r"""Translate each image by a random whole number of pixels, filling with zeros.

    Each image moves by :math:`(d_y, d_x)` drawn uniformly from :math:`\{-s, \dots, s\}^2`: a pad
    by ``s`` followed by a random ``H x W`` crop (the "random crop with padding" of CIFAR training):
    :math:`x'_{ij} = x_{i - d_y, j - d_x}`, zero where the index leaves the image.

    Args:
        max_shift: :math:`s \ge 0`, the largest shift in pixels along each axis.

    Shape:
        - x: (N, C, H, W) or (N, H, W); output: same shape and dtype.

    References:
        He et al. 2016, Deep Residual Learning (padding and random crops for CIFAR),
        arXiv:1512.03385.

    Example:
        >>> x = torch.rand(4, 1, 8, 8)
        >>> RandomShift(1)(x, torch.Generator().manual_seed(0)).shape
        torch.Size([4, 1, 8, 8])
    """

    def __init__(self, max_shift: int = 1):
        self.max_shift = check_int("max_shift", max_shift, minimum=0)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Shifted copies of the images ``x``, (N, C, H, W) or (N, H, W)."""
        images, squeezed = _as_images("x", x)
        s = self.max_shift
        if s == 0:
            return x.clone()
        n, _, h, w = images.shape
        padded = F.pad(images, (s, s, s, s))
        offsets = torch.randint(0, 2 * s + 1, (n, 2), generator=generator, device=x.device)
        rows = offsets[:, :1] + torch.arange(h, device=x.device)
        cols = offsets[:, 1:] + torch.arange(w, device=x.device)
        batch = torch.arange(n, device=x.device)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
        out = out.permute(0, 3, 1, 2).contiguous()
        return out.squeeze(1) if squeezed else out

    def __repr__(self) -> str:
        return f"RandomShift(max_shift={self.max_shift})"


class RandomAffine:
    r"""Random rotation, scaling and sub-pixel translation, by bilinear resampling.

    Each image is resampled on the grid :math:`u \mapsto sR(\theta)u + d` (coordinates in
    :math:`[-1, 1]`), with :math:`\theta \sim U[-\theta_{max}, \theta_{max}]`,
    :math:`s \sim U[1 - \sigma, 1 + \sigma]` and :math:`d \sim U[-\delta, \delta]^2` in pixels;
    pixels falling outside the image are zero.

    Args:
        degrees: :math:`\theta_{max} \ge 0`, the largest rotation in degrees.
        scale: :math:`\sigma \in [0, 1)`, the largest relative change of size.
        translate: :math:`\delta \ge 0`, the largest shift in pixels (may be fractional).

    Shape:
        - x: (N, C, H, W) or (N, H, W); output: same shape and dtype.

    Example:
        >>> x = torch.rand(4, 8, 8)
        >>> RandomAffine(degrees=15, scale=0.1, translate=1.0)(x).shape
        torch.Size([4, 8, 8])
    """

    def __init__(self, degrees: float = 15.0, scale: float = 0.0, translate: float = 0.0):
        check_in_range("degrees", degrees, 0.0, 180.0, closed_high=True)
        check_in_range("scale", scale, 0.0, 1.0)
        check_in_range("translate", translate, 0.0, math.inf)
        self.degrees, self.scale, self.translate = float(degrees), float(scale), float(translate)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Warped copies of the images ``x``, (N, C, H, W) or (N, H, W)."""
        images, squeezed = _as_images("x", x)
        n, _, h, w = images.shape
        angle = _uniform(n, -1.0, 1.0, images, generator) * math.radians(self.degrees)
        size = 1.0 + _uniform(n, -1.0, 1.0, images, generator) * self.scale
        shift_x = _uniform(n, -1.0, 1.0, images, generator) * (2 * self.translate / w)
        shift_y = _uniform(n, -1.0, 1.0, images, generator) * (2 * self.translate / h)
        cos, sin = size * torch.cos(angle), size * torch.sin(angle)
        theta = torch.stack(
            [torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1
        )
        out = _warp(images, theta)
        return out.squeeze(1) if squeezed else out

    def __repr__(self) -> str:
        return (
            f"RandomAffine(degrees={self.degrees}, scale={self.scale}, translate={self.translate})"
        )


class RandomRotation(RandomAffine):
    r"""Rotate each image by a random angle :math:`\theta \sim U[-\theta_{max}, \theta_{max}]`.

    A :class:`RandomAffine` with rotation only; small angles (10–20°) keep a digit a digit.

    Args:
        degrees: :math:`\theta_{max} \ge 0` in degrees.

    Shape:
        - x: (N, C, H, W) or (N, H, W); output: same shape and dtype.

    Example:
        >>> RandomRotation(15)(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(self, degrees: float = 15.0):
        super().__init__(degrees=degrees)

    def __repr__(self) -> str:
        return f"RandomRotation(degrees={self.degrees})"


class RandomResizedCrop:
    r"""Crop a random box of each image and resize it back to the full size (SimCLR's crop).

    The box covers a fraction :math:`a \sim U[a_{min}, 1]` of the area with the image's aspect
    ratio, at a uniformly random position inside the image; it is resampled bilinearly to H x W.

    Args:
        min_area: :math:`a_{min} \in (0, 1]`, the smallest fraction of the area kept.

    Shape:
        - x: (N, C, H, W) or (N, H, W); output: same shape and dtype.

    References:
        Chen et al. 2020, SimCLR (random crop and resize), arXiv:2002.05709.

    Example:
        >>> RandomResizedCrop(0.6)(torch.rand(3, 1, 8, 8)).shape
        torch.Size([3, 1, 8, 8])
    """

    def __init__(self, min_area: float = 0.6):
        check_in_range("min_area", min_area, 0.0, 1.0, closed_high=True)
        if min_area == 0:
            raise ValueError("min_area must be > 0, got 0")
        self.min_area = float(min_area)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Crops of the images ``x`` resized back, (N, C, H, W) or (N, H, W)."""
        images, squeezed = _as_images("x", x)
        n = images.shape[0]
        side = _uniform(n, self.min_area, 1.0, images, generator).sqrt()
        center_x = _uniform(n, -1.0, 1.0, images, generator) * (1 - side)
        center_y = _uniform(n, -1.0, 1.0, images, generator) * (1 - side)
        zero = torch.zeros_like(side)
        theta = torch.stack(
            [torch.stack([side, zero, center_x], 1), torch.stack([zero, side, center_y], 1)], 1
        )
        out = _warp(images, theta)
        return out.squeeze(1) if squeezed else out

    def __repr__(self) -> str:
        return f"RandomResizedCrop(min_area={self.min_area})"


class GaussianNoise:
    r"""Add independent Gaussian noise: :math:`x + \sigma\varepsilon`, :math:`\varepsilon \sim
    \mathcal N(0, I)`.

    Args:
        std: :math:`\sigma \ge 0`.

    Shape:
        - x: any shape (N, ...); output: same shape and dtype.

    Example:
        >>> x = torch.zeros(2, 5)
        >>> GaussianNoise(0.1)(x, torch.Generator().manual_seed(0)).shape
        torch.Size([2, 5])
    """

    def __init__(self, std: float = 0.05):
        check_in_range("std", std, 0.0, math.inf)
        self.std = float(std)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``x`` plus noise, any shape (N, ...)."""
        check_tensor("x", x, finite=False)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)
        return x + (self.std * noise).to(x.dtype)

    def __repr__(self) -> str:
        return f"GaussianNoise(std={self.std})"


class RandomMask:
    r"""Zero each entry (pixel or feature) independently with probability :math:`p`.

    :math:`x \odot m`, :math:`m_j \sim \mathrm{Bernoulli}(1 - p)`; for images the mask is shared by
    the channels of a pixel. No rescaling: a masked pixel reads as background.

    Args:
        p: :math:`p \in [0, 1)`, the masking probability.

    Shape:
        - x: (N, D) vectors, or (N, C, H, W) / (N, H, W) images; output: same shape and dtype.

    Example:
        >>> x = torch.ones(2, 1, 8, 8)
        >>> y = RandomMask(0.25)(x, torch.Generator().manual_seed(0))
        >>> y.shape, bool(((y == 0) | (y == 1)).all())
        (torch.Size([2, 1, 8, 8]), True)
    """

    def __init__(self, p: float = 0.1):
        check_in_range("p", p, 0.0, 1.0)
        self.p = float(p)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Masked copy of ``x``: vectors (N, D) or images (N, C, H, W) / (N, H, W)."""
        check_tensor("x", x, (2, 3, 4), finite=False)
        shape = (x.shape[0], 1, *x.shape[2:]) if x.dim() == 4 else x.shape
        keep = torch.rand(shape, generator=generator, device=x.device) >= self.p
        return x * keep.to(x.dtype)

    def __repr__(self) -> str:
        return f"RandomMask(p={self.p})"


class Compose:
    """Apply transforms in order, all drawing from the same generator.

    Args:
        transforms: callables ``t(x, generator)``.

    Example:
        >>> t = Compose([RandomShift(1), GaussianNoise(0.05)])
        >>> g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
        >>> x = torch.rand(4, 1, 8, 8)
        >>> bool(torch.equal(t(x, g1), t(x, g2)))
        True
    """

    def __init__(self, transforms: Sequence[Callable]):
        transforms = list(transforms)
        for i, t in enumerate(transforms):
            if not callable(t):
                raise TypeError(f"transforms[{i}] must be callable, got {type(t).__name__}")
        self.transforms = transforms

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The transforms applied in turn to ``x``, (N, ...); each keeps the shape."""
        for t in self.transforms:
            x = t(x, generator)
        return x

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


def digits_augmentation(
    degrees: float = 15.0,
    scale: float = 0.1,
    translate: float = 1.0,
    mask: float = 0.1,
    noise: float = 0.05,
) -> Compose:
    """The augmentation used for 8x8 digits: affine jitter, pixel dropout, sensor noise.

    A small rotation, rescaling and sub-pixel shift (:class:`RandomAffine`), then
    :class:`RandomMask` and :class:`GaussianNoise`. Pixel values are expected in [0, 1].

    Shape:
        - x: (N, 1, 8, 8) or (N, 8, 8); output: same shape and dtype.

    Example:
        >>> t = digits_augmentation()
        >>> t(torch.rand(5, 1, 8, 8), torch.Generator().manual_seed(0)).shape
        torch.Size([5, 1, 8, 8])
    """
    return Compose(
        [
            RandomAffine(degrees=degrees, scale=scale, translate=translate),
            RandomMask(mask),
            GaussianNoise(noise),
        ]
    )
