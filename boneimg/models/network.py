"""The nucleus network: a compact U-Net-style encoder-decoder (torch).

Imported only by the model code that needs torch, never at ``import boneimg``.
"""

import torch
from torch import nn
from torch.nn import functional as F

#: Output channels before the cell-type logits: nucleus, centre, distance.
N_MAPS = 3


def _conv(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class NucleusNet(nn.Module):
    """U-Net with few channels at full resolution, so that CPU inference stays fast.

    Parameters
    ----------
    widths : sequence of int
        Channels at each level, full resolution first; each further level halves the grid.
    n_types : int
        Number of cell-type classes (0 for none).

    The output has ``3 + n_types`` channels of logits on the input grid: nucleus pixel,
    nucleus centre (a Gaussian around each centre), distance to the nucleus boundary
    (normalised per nucleus to 1 at its deepest point), then the cell types.
    """

    def __init__(self, widths=(8, 24, 48, 96), n_types=4):
        super().__init__()
        self.widths = tuple(int(w) for w in widths)
        self.n_types = int(n_types)
        self.encoders = nn.ModuleList()
        cin = 3
        for w in self.widths:
            self.encoders.append(nn.Sequential(_conv(cin, w), _conv(w, w)))
            cin = w
        self.decoders = nn.ModuleList(
            nn.Sequential(_conv(self.widths[i + 1] + self.widths[i], self.widths[i]), _conv(self.widths[i], self.widths[i]))
            for i in reversed(range(len(self.widths) - 1)))
        self.head = nn.Conv2d(self.widths[0], N_MAPS + self.n_types, 1)
        with torch.no_grad():  # centres are rare: start from a low centre probability (CenterNet)
            self.head.bias[1] = -4.0

    @property
    def stride(self):
        """Input sides must be multiples of this (pixels)."""
        return 2 ** (len(self.widths) - 1)

    def fuse_batch_norms(self):
        """Fold each batch norm into its convolution, and split each decoder's first convolution
        so that it needs no concatenated copy, for inference (same outputs, less work).

        Only for a network in eval mode that will not be trained again; returns `self`.
        """
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        for block in self.modules():
            if isinstance(block, nn.Sequential) and len(block) == 3 and isinstance(block[1], nn.BatchNorm2d):
                block[0] = fuse_conv_bn_eval(block[0], block[1])
                block[1] = nn.Identity()
        # each decoder's first convolution, split into the part on the upsampled input and the
        # part on the skip: conv(cat(up, skip)) = conv_up(up) + conv_skip(skip), without the copy
        for decoder, width in zip(self.decoders, reversed(self.widths[1:])):
            if isinstance(decoder[0][0], nn.Conv2d):  # not split yet
                decoder[0][0] = _SplitConv(decoder[0][0], width)
        return self

    def forward(self, x):
        skips = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(F.max_pool2d(x, 2) if i else x)
            skips.append(x)
        for decoder, skip in zip(self.decoders, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = decoder((x, skip) if isinstance(decoder[0][0], _SplitConv) else torch.cat([x, skip], 1))
        return self.head(x)


class _SplitConv(nn.Module):
    """A convolution of ``cat(up, skip)`` as the sum of two (inference only; see
    :meth:`NucleusNet.fuse_batch_norms`), called with the pair ``(up, skip)``."""

    def __init__(self, conv, n_up):
        super().__init__()
        where = {"device": conv.weight.device, "dtype": conv.weight.dtype}  # CUDA stays CUDA
        self.up = nn.Conv2d(n_up, conv.out_channels, 3, padding=1, bias=True, **where)
        self.skip = nn.Conv2d(conv.in_channels - n_up, conv.out_channels, 3, padding=1, bias=False, **where)
        with torch.no_grad():
            self.up.weight.copy_(conv.weight[:, :n_up])
            self.up.bias.copy_(conv.bias)
            self.skip.weight.copy_(conv.weight[:, n_up:])

    def forward(self, pair):
        up, skip = pair
        return self.up(up) + self.skip(skip)
