"""DCGAN generator and discriminator for small greyscale images (Radford, Metz & Chintala, 2015).

The paper's guidelines, followed here:

* no pooling: the generator up-samples with fractionally-strided (transposed) convolutions, the
  discriminator down-samples with strided convolutions;
* batch normalisation in both nets, except the generator's output and the discriminator's input;
* ReLU in the generator with ``tanh`` on the output (images in [-1, 1]); LeakyReLU(0.2) in the
  discriminator;
* weights initialised from ``N(0, 0.02)`` (:func:`dcgan_init_`).

The paper's nets map ``z ∈ R^100`` to 64×64 colour images; these are scaled down for 28×28
(Fashion-MNIST: 7 → 14 → 28) or 32×32 (4 → 8 → 16 → 32) single-channel images.
``upsample="resize"`` replaces every transposed convolution by nearest-neighbour resizing and a 3×3
convolution (Odena, Dumoulin & Olah, 2016, "Deconvolution and checkerboard artifacts").
"""
from __future__ import annotations

from torch import nn

# image size -> (size after projecting z, number of ×2 up-samplings)
LAYOUTS = {28: (7, 2), 32: (4, 3)}


def upsample_block(in_channels: int, out_channels: int, mode: str = "transpose") -> nn.Module:
    """Double the resolution: ``ConvTranspose2d(k=4, s=2, p=1)`` or ``Upsample ×2 + Conv2d(k=3, p=1)``."""
    if mode == "transpose":
        return nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=False)
    if mode == "resize":
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                             nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False))
    raise ValueError(f"upsample mode must be 'transpose' or 'resize', got {mode!r}")


def _layout(image_size: int) -> tuple[int, int]:
    if image_size not in LAYOUTS:
        raise ValueError(f"image_size must be one of {sorted(LAYOUTS)}, got {image_size}")
    return LAYOUTS[image_size]


class Generator(nn.Module):
    """``z (N, z_dim) → image (N, channels, S, S)`` in [-1, 1].

    ``z`` is projected to ``(width·2^k, s, s)`` by a transposed convolution over a 1×1 map, then
    each block halves the channels and doubles the size: [up-sample → BN → ReLU], and the last
    block outputs ``channels`` maps through ``tanh``.

    Args:
        z_dim: length of the noise vector (100 in the paper).
        channels: image channels (1 for Fashion-MNIST).
        width: channels of the last hidden block (64 in the paper).
        image_size: 28 or 32.
        upsample: ``"transpose"`` (DCGAN) or ``"resize"`` (resize + convolution).
    """

    def __init__(self, z_dim: int = 100, channels: int = 1, width: int = 64, image_size: int = 28,
                 upsample: str = "transpose"):
        super().__init__()
        start, ups = _layout(image_size)
        self.z_dim = z_dim
        widths = [width * 2 ** k for k in range(ups - 1, -1, -1)]  # e.g. [128, 64]
        self.project = nn.Sequential(nn.ConvTranspose2d(z_dim, widths[0], start, bias=False),  # (N, w0, s, s)
                                     nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        layers = []
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [upsample_block(c_in, c_out, upsample), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        layers += [upsample_block(widths[-1], channels, upsample), nn.Tanh()]
        self.upsample = nn.Sequential(*layers)  # (N, w0, s, s) -> (N, channels, S, S)
        dcgan_init_(self)

    def forward(self, z):
        return self.upsample(self.project(z.view(z.shape[0], self.z_dim, 1, 1)))


class Discriminator(nn.Module):
    """``image (N, channels, S, S) → logit (N,)``: the score that the image is real (before σ).

    Strided 4×4 convolutions halve the size (no pooling) with LeakyReLU(0.2), BN from the second
    block on, and a last convolution covering the whole remaining map gives one logit.
    """

    def __init__(self, channels: int = 1, width: int = 64, image_size: int = 28):
        super().__init__()
        start, downs = _layout(image_size)
        layers, c_in = [], channels
        for k in range(downs):
            c_out = width * 2 ** k
            layers.append(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=k == 0))
            if k > 0:  # no BN on the discriminator's input layer (DCGAN)
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, start))  # (N, 1, 1, 1)
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, x):
        return self.net(x).flatten()  # (N,)


def dcgan_init_(module: nn.Module) -> nn.Module:
    """DCGAN initialisation: conv weights ``N(0, 0.02)``; BN scale ``N(1, 0.02)``, shift 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module
