"""Training and fine-tuning the nucleus network (CPU by default)."""

import math
import platform
import time

import numpy as np

from .datasets import CELL_TYPES
from .targets import make_targets

#: Resampling jitter applied to every training image (scale augmentation).
SCALES = (0.85, 1.0, 1.18)

# Stain matrix (rows: hematoxylin, eosin, DAB optical densities of R, G, B) for the stain
# augmentation: amounts are jittered in this space, as stain intensity varies between labs.
_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], np.float32)


def prepare(records, working_pixel_size_um, scales=SCALES):
    """:class:`~boneimg.models.targets.Targets` of every record at every scale jitter."""
    return [make_targets(r, working_pixel_size_um, s) for r in records for s in scales]


def _crop(t, size, rng):
    """A random size x size crop of every map of `t` (padded where the image is smaller)."""
    h, w = t.rgb.shape[:2]
    y = rng.integers(0, max(1, h - size + 1))
    x = rng.integers(0, max(1, w - size + 1))
    out = []
    for arr, fill in ((t.rgb, 255), (t.centre, 0), (t.nucleus, -1), (t.distance, -1), (t.cell_type, -1)):
        part = arr[y: y + size, x: x + size]
        pad = [(0, size - part.shape[0]), (0, size - part.shape[1])] + [(0, 0)] * (part.ndim - 2)
        out.append(np.pad(part, pad, constant_values=fill) if any(p[1] for p in pad) else part)
    k, flip = rng.integers(0, 4), rng.integers(0, 2)
    out = [np.rot90(a, k, axes=(0, 1)) for a in out]
    return [np.ascontiguousarray(a[:, ::-1] if flip else a) for a in out]


def _batch(groups, weights, size, n, rng):
    picks = rng.choice(len(groups), size=n, p=weights)
    crops = [_crop(groups[g][rng.integers(0, len(groups[g]))], size, rng) for g in picks]
    return [np.stack(parts) for parts in zip(*crops)]


def _stain_jitter(rgb, rng, torch):
    """Random stain amounts and brightness, applied in optical-density space (rgb float in [0, 1])."""
    hed = torch.from_numpy(_HED)
    inv = torch.linalg.inv(hed)
    od = -torch.log(rgb.clamp_min(1 / 255))
    amounts = torch.einsum("bchw,cd->bdhw", od, inv)
    n = rgb.shape[0]
    alpha = torch.from_numpy(rng.uniform(0.75, 1.3, (n, 3, 1, 1)).astype(np.float32))
    beta = torch.from_numpy(rng.uniform(-0.05, 0.05, (n, 3, 1, 1)).astype(np.float32))
    od = torch.einsum("bdhw,dc->bchw", amounts * alpha + beta, hed)
    gain = torch.from_numpy(rng.uniform(0.9, 1.1, (n, 1, 1, 1)).astype(np.float32))
    return (torch.exp(-od) * gain).clamp(0, 1)


def _focal_centre_loss(logits, target, torch):
    """Penalty-reduced focal loss on the centre map (CenterNet): positives are the centre pixels."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target >= 0.999
    pos_loss = -((1 - p) ** 2 * torch.log(p))[pos].sum()
    neg_loss = -((1 - target) ** 4 * p ** 2 * torch.log(1 - p))[~pos].sum()
    return (pos_loss + neg_loss) / pos.sum().clamp_min(1)


def losses(out, centre, nucleus, distance, cell_type, torch):
    """Dict of the loss terms for one batch (each a scalar tensor)."""
    F = torch.nn.functional
    terms = {"centre": _focal_centre_loss(out[:, 1], centre, torch)}
    known = nucleus >= 0
    if known.any():
        logits, truth = out[:, 0][known], nucleus[known].float()
        p = torch.sigmoid(logits)
        dice = 1 - (2 * (p * truth).sum() + 1) / (p.sum() + truth.sum() + 1)
        terms["nucleus"] = F.binary_cross_entropy_with_logits(logits, truth) + dice
        terms["distance"] = F.mse_loss(torch.sigmoid(out[:, 2][known]), distance[known]) * 5
    if (cell_type >= 0).any():
        terms["cell_type"] = F.cross_entropy(out[:, 3:], cell_type.long(), ignore_index=-1) * 0.5
    return terms


def train(groups, *, steps, net=None, widths=(12, 24, 48, 96), batch_size=12, patch_px=128, lr=3e-3, seed=0,
          threads=None, log=print, callback=None):
    """Train (or fine-tune, when `net` is given) on lists of targets.

    Parameters
    ----------
    groups : dict of str to list of Targets
        Training images per data set, with a sampling weight: ``{name: (weight, targets)}``.
    steps : int
        Optimiser steps (batches).
    net : NucleusNet, optional
        Start from this network (fine-tuning); a new one with `widths` otherwise.
    batch_size, patch_px : int
        Patches per batch and their side on the working grid.
    lr : float
        Peak learning rate of the one-cycle schedule (AdamW).
    seed : int
        Seeds numpy and torch: the same call gives the same weights on the same machine.
    threads : int, optional
        torch CPU threads (default: torch's choice).
    log : callable
        Receives a progress line every 100 steps.
    callback : callable, optional
        Called as ``callback(step, net)`` every 100 steps (checkpoints, validation).

    Returns
    -------
    net, dict
        The trained network (eval mode) and a training record (steps, seconds, final losses).
    """
    import torch

    from .network import NucleusNet

    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    names = [k for k, (w, t) in groups.items() if w > 0 and t]
    weights = np.array([groups[k][0] for k in names], float)
    weights /= weights.sum()
    lists = [groups[k][1] for k in names]
    if net is None:
        net = NucleusNet(widths, n_types=len(CELL_TYPES))
    net = net.to(memory_format=torch.channels_last)  # faster CPU convolutions (oneDNN)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    start, running = time.perf_counter(), {}
    for step in range(1, steps + 1):
        rgb, centre, nucleus, distance, cell_type = _batch(lists, weights, patch_px, batch_size, rng)
        x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255
        x = _stain_jitter(x, rng, torch).contiguous(memory_format=torch.channels_last)
        out = net(x)
        terms = losses(out, torch.from_numpy(centre), torch.from_numpy(nucleus), torch.from_numpy(distance),
                       torch.from_numpy(cell_type), torch)
        loss = sum(terms.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        for k, v in terms.items():
            v = v.item()
            running[k] = 0.98 * running.get(k, v) + 0.02 * v
        if step % 100 == 0 or step == steps:
            elapsed = time.perf_counter() - start
            log(f"step {step}/{steps}  " + "  ".join(f"{k} {v:.4f}" for k, v in running.items())
                + f"  {elapsed / step:.2f} s/step, {elapsed * (steps - step) / step / 60:.1f} min left")
            if callback is not None:
                callback(step, net)
    net.eval()
    record = {"steps": steps, "batch_size": batch_size, "patch_px": patch_px, "lr": lr, "seed": seed,
              "seconds": round(time.perf_counter() - start, 1), "torch": torch.__version__,
              "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
              "final_losses": {k: round(v, 4) for k, v in running.items()}}
    return net, record


def count_parameters(net):
    return int(sum(math.prod(p.shape) for p in net.parameters()))
