"""Quantization-aware training of activations: round where the integer model rounds.

`ActivationQuantizer` follows `training.act_points.act_plan`: at every point where quantize/ stores
an activation it rounds the float tensor half up onto the power-of-two grid 2^-frac and clamps it
to the stored range, exactly as the integer model will, with a straight-through gradient (1 inside
the range, 0 where the value is clamped). One magnitude bound per scale key sets frac with the
converter's own rule (`power_of_two_frac`); the bounds are exported in the bundle and
`python -m quantize` uses them instead of calibrating after training.

How the bounds are found (`scales`):
- "calibrated": a running average of each batch's peak |x| (momentum 0.1) in training mode, like
  BN's running moments; fixed in evaluation.
- "learned": log2 of each bound is a parameter, trained by the loss through the rounding grid
  (as in TQT, Jain et al. 2019: straight-through floor of the scale exponent), started from the
  first batch's peak. Its gradient is scaled by 1/sqrt(elements x levels) (as LSQ does for its
  step size) so that one SGD learning rate serves weights and scales.
"""
import math

import torch
from torch import nn

from common.bits import int_range
from training.act_points import act_plan

SCALE_MODES = ("calibrated", "learned")
BOUND_MOMENTUM = 0.1


def round_half_up(v):
    """Straight-through rounding half up: the forward value floor(v + 1/2), gradient 1."""
    return v + (torch.floor(v + 0.5) - v).detach()


class _RoundToGrid(torch.autograd.Function):
    """clamp(floor(x * 2^frac + 1/2), lo, hi) * 2^-frac in one pass, gradient 1 where x lies
    inside [lo, hi] on the grid and 0 where it is clamped: the calibrated mode's rounding (the
    composite form in `ActivationQuantizer._round` costs ~2x the training step's time)."""

    @staticmethod
    def forward(ctx, x, frac, lo, hi):
        v = x * 2.0 ** frac
        q = torch.floor(v + 0.5)
        if lo is None:
            ctx.save_for_backward(None)
            return q * 2.0 ** -frac
        ctx.save_for_backward((v >= lo) & (v <= hi))
        return q.clamp_(lo, hi).mul_(2.0 ** -frac)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return (grad if inside is None else grad * inside), None, None, None


def scale_gradient(p, factor):
    """p in the forward pass; its gradient multiplied by `factor`."""
    return p * factor + (p - p * factor).detach()


class ActivationQuantizer(nn.Module):
    def __init__(self, ops, act_bits, scales="calibrated", residual_bits=None, input_bits=None):
        super().__init__()
        if scales not in SCALE_MODES:
            raise ValueError(f"scales must be one of {SCALE_MODES}, got {scales!r}")
        self.plan = act_plan(ops, act_bits, residual_bits, input_bits)
        self.act_bits, self.residual_bits = act_bits, self.plan.residual_bits
        self.input_bits = self.plan.input_bits
        self.scales = scales
        self.keys = {k.name: i for i, k in enumerate(self.plan.keys)}
        n = len(self.plan.keys)
        # bounds: the calibrated peaks, or the learned bounds' starting values; 0 = not yet seen.
        self.register_buffer("bounds", torch.zeros(n))
        self.log2_bounds = nn.Parameter(torch.zeros(n)) if scales == "learned" else None
        self._exponent = {}   # scale key -> (frac, the gradient-carrying frac or None)
        self._host_bounds = self._host_log2 = None   # set by begin_pass
        self.frozen = False   # True: training-mode passes leave the bounds alone

    # -- the bounds -------------------------------------------------------------------------
    def bound_values(self):
        """{scale key: bound} as the integer model will read them (float64)."""
        if self.log2_bounds is not None:
            values = [2.0 ** float(p.detach()) if float(b) > 0 else 0.0
                      for p, b in zip(self.log2_bounds, self.bounds)]
        else:
            values = [float(b) for b in self.bounds]
        return {k.name: v for k, v in zip(self.plan.keys, values)}

    def begin_pass(self):
        """Read every bound to the host once per forward pass: the grid exponents are host
        integers, and reading a device tensor at every rounding point would stall the GPU there
        (QAT ran 7x slower than float training on one)."""
        self._host_bounds = self.bounds.tolist()
        self._host_log2 = None if self.log2_bounds is None else self.log2_bounds.detach().tolist()

    def _observe(self, name, x):
        """Update scale key `name` from its float tensor x; set this forward's exponent.
        A calibrated bound moves on the device; this pass rounds with the bound it began with."""
        i, key = self.keys[name], self.plan.keys[self.keys[name]]
        if self.training and not self.frozen:
            peak = x.detach().abs().max()
            with torch.no_grad():
                if self._host_bounds[i] <= 0:           # first sight: start from this peak
                    first = max(float(peak), 1e-12)
                    self.bounds[i] = self._host_bounds[i] = first
                    if self.log2_bounds is not None:
                        self.log2_bounds[i] = self._host_log2[i] = math.log2(first)
                elif self.log2_bounds is None:
                    self.bounds[i].mul_(1 - BOUND_MOMENTUM).add_(BOUND_MOMENTUM * peak)
        if self.log2_bounds is None:
            self._exponent[name] = (key.frac(self._host_bounds[i]), None)
            return
        frac = key.frac(2.0 ** self._host_log2[i])
        top = int_range(key.bits, key.signed)[1]
        p = scale_gradient(self.log2_bounds[i], 1.0 / math.sqrt(x[0].numel() * top))
        exact = math.log2(top) - p                      # frac before the floor
        self._exponent[name] = (frac, exact + (frac - exact).detach())

    def _round(self, rounding, x):
        whole, frac = self._exponent[rounding.scale]
        if frac is None:
            return _RoundToGrid.apply(x, whole, *rounding.limits(whole))
        lo, hi = rounding.limits(whole)
        v = x * 2.0 ** frac
        if lo is not None:
            v = torch.clamp(v, lo, hi)
        return round_half_up(v) * 2.0 ** -frac

    # -- the model's hooks -------------------------------------------------------------------
    def output(self, name, y):
        """Op `name`'s output y as the integer model stores it (unchanged if it is not stored)."""
        rounding = self.plan.after.get(name)
        if rounding is None:
            return y
        if rounding.scale == name:
            self._observe(name, y)
        return self._round(rounding, y)

    def add(self, name, a, b):
        """The residual add `name` of a + b: each input moved onto the sum's grid, then summed and
        clamped (the integer add's requantized input, shifts and saturation)."""
        self._observe(name, a + b)
        ra, rb = self.plan.add_inputs[name]
        return self._round(self.plan.after[name], self._round(ra, a) + self._round(rb, b))
