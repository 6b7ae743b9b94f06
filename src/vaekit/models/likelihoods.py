"""Observation models p(x|z): the decoder outputs their parameters (B, D), these give log-probabilities.

Modules, so that a likelihood with a learned variance owns its parameter and saves with the model.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

LOG_SIGMA_MIN = -6.0  # a learned sigma never collapses below e^-6 (log-likelihoods stay bounded)


class Bernoulli(nn.Module):
    """Values in [0, 1] as Bernoulli probabilities; the decoder outputs logits."""

    name = "bernoulli"
    # True where the mean is computed one value at a time (a loop a graph exporter would unroll D times)
    sequential_mean = False

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Sum over dimensions of log p(x|z): logits (..., D), x broadcastable to them -> (...).

        log p = x l - log(1 + e^l) = x l - softplus(l), stable for any logit. ``x`` (B, D) broadcasts over
        the samples of (K, B, D) logits, so importance sampling never makes K copies of the data.
        """
        return (params * x).sum(-1) - F.softplus(params).sum(-1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params)

    def draw(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Values drawn from p(x | z), each 0 or 1: logits (..., D) -> (..., D) fp32."""
        return torch.bernoulli(torch.sigmoid(params.float()), generator=generator)


class AutoregressiveBernoulli(Bernoulli):
    """Bernoulli values, each conditioned on the code and on the values before it: p(x | z) = prod_i p(x_i | z,
    x_<i), x flattened in raster (C, H, W) order, with

        logit_i = l_i(z) + sum_{j<i} W_ij x_j + sum_k V_ik relu(sum_{j<d_k} U_kj x_j + c_k),   V_ik = 0 unless d_k <= i.

    With ``window`` R > 0, W_ij = 0 also where x_j lies more than R image rows above x_i, or, in an earlier plane of
    a C > 1 image, more than R rows above or below it (a local receptive field). With ``order`` "columns" all of
    this holds for the image transposed, (C, W, H): the values go column by column and a window counts columns.
    The transposed order sees other neighbours before each value (the column left of it, not the row above); a
    mixture of one model of each order (``vaekit.evaluate``) gained about what two seeds of one order do
    (bench/README.md, 2026-12-04 (r)),
    and ``units`` M > 0 adds a small nonlinear layer that lets the decoder set how much the neighbours count:

        logit_i += sum_m b_m relu(a_m l_i(z) + e_m context_i + conv_m(x)_i),

    conv_m a convolution (bias included) masked to the values near x_i and before it (``_build_units``), weights
    shared across positions; a, b, e per unit (and image plane). conv(x) is computed once a batch; only the
    elementwise ReLUs, M x (..., B, D), run per sample of z.

    The decoder gives l(z), the global shape; the rest, owned here and saved with the model, adds what independent
    pixels cannot: each value's dependence on the ones before it. W (strictly lower-triangular) is a fully visible
    sigmoid belief net (Frey 1998); ``hidden`` > 0 adds H hidden units, unit k reading the first d_k values (MADE's
    masks, Germain et al. 2015, in raster order). The autoregressive decoders of PixelVAE (Gulrajani et al. 2017) and
    of Tomczak & Welling's (2018) PixelHVAE do this with masked convolutions; masked dense layers cost a few matmuls
    a batch whatever the number of samples of z, so training and the importance-sampled NLL stay parallel. Only
    drawing pictures is sequential (``mean``, ``draw``).
    """

    name = "bernoulli-autoregressive"
    sequential_mean = True

    def __init__(self, dim: int, hidden: int = 0, window: int = 0, image_shape: tuple[int, ...] = (), units: int = 0,
                 order: str = "rows"):
        super().__init__()
        # W (D, D), W[i, j] the weight of x_j in x_i's logit, only j < i used (``linear``); V starts at 0 too, so
        # the model begins as the plain Bernoulli one
        self.weight = nn.Parameter(torch.zeros(dim, dim))
        self.hidden = hidden
        # (C, H, W) for images ((H, W) as one plane), else as given
        shape = tuple(image_shape)
        self.dim, self.window = dim, window
        self.image_shape = (1, *shape) if len(shape) == 2 else shape[-3:] if len(shape) > 3 else shape
        # "columns": everything below works on the transposed image, the values gathered into its raster order at
        # the boundary (log_prob, mean, draw); order_index[p] is the value at place p of that order
        if order == "columns" and len(self.image_shape) == 3:
            channels, height, width = self.image_shape
            index = torch.arange(dim).view(channels, height, width).transpose(1, 2).flatten()  # (D,)
            self.register_buffer("order_index", index, persistent=False)
            self.register_buffer("order_inverse", index.argsort(), persistent=False)
            self.image_shape = (channels, width, height)
        else:
            self.order_index = self.order_inverse = None
        # a window over C > 1 planes saves which mask it has (1: rows counted within each plane, _linear_mask);
        # model files from before 2026-12-04 lack it and load with the mask their weights were fitted with
        self.saves_window_layout = bool(window) and self._planes() > 1
        if self.saves_window_layout:
            self.register_buffer("window_by_plane", torch.tensor(1))
        self.register_buffer("linear_mask", self._linear_mask(by_plane=True), persistent=False)
        if hidden:
            # d_k in 1 .. D-1, spread evenly: unit k reads x_0 .. x_{d_k - 1} and feeds x_{d_k} .. x_{D-1}
            degrees = 1 + torch.arange(hidden) * (dim - 1) // hidden  # (H,)
            positions = torch.arange(dim)  # (D,)
            self.register_buffer("in_mask", (positions[None, :] < degrees[:, None]).float(), persistent=False)
            self.register_buffer("out_mask", (degrees[None, :] <= positions[:, None]).float(), persistent=False)
            self.hidden_in = nn.Linear(dim, hidden)  # U (H, D), c (H,)
            self.hidden_out = nn.Parameter(torch.zeros(dim, hidden))  # V (D, H)
        self.units = units
        if units:
            self._build_units(window, units)

    def _planes(self) -> int:
        return self.image_shape[0] if len(self.image_shape) == 3 else 1

    def _linear_mask(self, by_plane: bool) -> torch.Tensor:
        """M (D, D): 1 where x_i reads x_j, only j < i. With a window R, also only from x_i's own row (left of it)
        and the R rows above and, in the planes before x_i's, the rows within R of its own (PixelCNN's receptive
        field, with a weight per position): fewer weights to overfit static MNIST, 28 x 28 with R = 2 keeping ~70
        of the up to 783 per pixel. ``by_plane`` False: the mask before 2026-12-04, rows counted in raster (C, H, W)
        order across planes (the same for one plane; for C > 1 the first rows of plane c read the last rows of
        plane c - 1, not the place itself in the planes before)."""
        reads = torch.ones(self.dim, self.dim).tril(diagonal=-1).bool()
        if self.window:
            width = self.image_shape[-1]
            plane_size = self.dim // self._planes()
            index = torch.arange(self.dim)  # (D,)
            row = index % plane_size // width if by_plane else index // width  # (D,)
            plane = index // plane_size  # (D,)
            # W is then block-banded, yet kept whole: multiplying each image row by its band alone (14x fewer
            # multiply-adds for MNIST, R = 1) was measured no faster a training step (bench/README.md, 2026-12-03 (n))
            reads &= row[None, :] >= row[:, None] - self.window
            if by_plane:
                reads &= (plane[None, :] == plane[:, None]) | (row[None, :] <= row[:, None] + self.window)
        return reads.float()

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        """As nn.Module's (the third way old files load, beside a model's ``optional_state`` and ``legacy_state``):
        the weights of a windowed C > 1 model file from before the per-plane window (no ``window_by_plane``) load
        with the raster-row mask they were fitted with."""
        own_weights = prefix + "weight" in state_dict  # not a partial load that leaves the likelihood out
        if self.saves_window_layout and own_weights and prefix + "window_by_plane" not in state_dict:
            state_dict[prefix + "window_by_plane"] = torch.tensor(0)
        super()._load_from_state_dict(state_dict, prefix, *args)
        if self.saves_window_layout:
            # in place: the buffer keeps its device, dtype and identity (a compiled objective holds it)
            self.linear_mask.copy_(self._linear_mask(by_plane=bool(self.window_by_plane)))

    def _build_units(self, window: int, units: int) -> None:
        """M units a value, each a ReLU of the decoder's logit (scaled), the linear context and a masked convolution
        of the values around it; their weighted sum joins the logit. The convolution reads the ``window`` rows
        above and the value's own row left of it, ``window`` + 1 columns either side (PixelCNN's mask A, van den
        Oord et al. 2016; for C planes, plane c also reads the planes before it whole within the kernel, raster
        (C, H, W) order). Its weights are shared across positions, unlike W's.

        The convolution is a stack of shifted images (one per tap) and a small matmul, not ``conv2d``: on one CPU
        thread the latter's weight gradient took 26 ms a batch of 500 MNIST images, ``unfold`` 13 ms."""
        channels, height, width = self.image_shape
        # the kernel's taps (input plane, row offset, column offset) that some plane's units read: plane c's read
        # plane c only in the rows above and left of the value in its own row, the planes before c in the whole
        # (2 R + 1) x (2 R + 3) window, the planes after c nowhere
        near = [(dr, dc) for dr in range(-window, window + 1) for dc in range(-window - 1, window + 2)]
        causal = [(dr, dc) for dr, dc in near if dr < 0 or (dr == 0 and dc < 0)]
        self.unit_taps = [(c, dr, dc) for c in range(channels) for dr, dc in (near if c < channels - 1 else causal)]
        # mask (C, 1, T): 1 where plane c's units read tap t
        mask = torch.tensor([[float(c_in < c or (c_in == c and (dr, dc) in causal)) for c_in, dr, dc in self.unit_taps]
                             for c in range(channels)])
        self.register_buffer("unit_mask", mask[:, None, :], persistent=False)
        # which value each tap reads at each position, an index into x with a 0 appended (D where the tap leaves
        # the image): (T, H * W), for the pictures' one-value-at-a-time pass
        row, col = torch.arange(height)[:, None], torch.arange(width)[None, :]
        reads = []
        for c, dr, dc in self.unit_taps:
            inside = (row + dr >= 0) & (row + dr < height) & (col + dc >= 0) & (col + dc < width)
            reads.append(torch.where(inside, c * height * width + (row + dr) * width + col + dc,
                                     channels * height * width).flatten())
        self.register_buffer("unit_reads", torch.stack(reads), persistent=False)
        self.unit_reach = window
        fan_in = len(causal)  # nn.Conv2d's default initialisation, over the taps a unit reads in its own plane
        self.unit_kernel = nn.Parameter(torch.empty(channels, units, len(self.unit_taps)).uniform_(-1, 1)
                                        / fan_in ** 0.5)
        self.unit_bias = nn.Parameter(torch.empty(channels, units).uniform_(-1, 1) / fan_in ** 0.5)
        self.unit_logit = nn.Parameter(torch.ones(channels, units))  # a (C, M): the decoder logit's weight
        self.unit_context = nn.Parameter(torch.zeros(channels, units))  # e (C, M): the linear context's weight
        # b (C, M) at 0: the model begins as the linear one
        self.unit_out = nn.Parameter(torch.zeros(channels, units))

    def _per_value(self, per_plane: torch.Tensor) -> torch.Tensor:
        """A (C, M) weight of each plane's units -> (M, D) (or (M, 1) for one plane, broadcast), fp32."""
        plane = self.image_shape[1] * self.image_shape[2]
        return (per_plane.t() if len(per_plane) == 1 else per_plane.t().repeat_interleave(plane, 1)).float()

    def _unit_inputs(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The part of the units' input that x gives, computed once a batch: x (B, D), context (B, D) -> (M, B, D)."""
        channels, height, width = self.image_shape
        reach = self.unit_reach
        padded = F.pad(x.view(-1, channels, height, width), (reach + 1, reach + 1, reach, reach))
        patches = torch.stack([padded[:, c, reach + dr:reach + dr + height, reach + 1 + dc:reach + 1 + dc + width]
                               for c, dr, dc in self.unit_taps], -1).flatten(1, 2)  # (B, H * W, T): each tap's values
        kernel = (self.unit_kernel * self.unit_mask).to(patches.dtype)  # (C, M, T)
        conv = torch.einsum("bpt,cmt->mbcp", patches, kernel).float() + self.unit_bias.t()[:, None, :, None].float()
        return conv.flatten(2) + context * self._per_value(self.unit_context)[:, None, :]  # (M, B, D)

    def linear(self) -> torch.Tensor:
        """W with everything on and above the diagonal (and, with a window, outside it) zeroed: (D, D)."""
        return self.weight * self.linear_mask

    def context(self, x: torch.Tensor) -> torch.Tensor:
        """What the values before each one add to its logit: x (N, D) -> (N, D), fp32."""
        out = x @ self.linear().t().to(x.dtype)
        if self.hidden:
            h = F.relu(F.linear(x, self.hidden_in.weight * self.in_mask, self.hidden_in.bias))  # (N, H)
            out = out + h @ (self.hidden_out * self.out_mask).t().to(h.dtype)
        return out.float()

    def logits(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Each value's conditional logit given z and the values of x before it: l(z) (..., B, D), x (B, D) ->
        (..., B, D) fp32. What x gives (the context, the units' convolution) is computed once, (B, D) or (M, B, D),
        and broadcast over any samples of z."""
        context = self.context(x)
        logits = params.float() + context
        if self.units:
            # the logit gains sum_m b_m relu(a_m l(z) + e_m context + conv_m(x)), one unit at a time: each step
            # reads and writes (..., B, D), where all M at once would hold (..., B, D, M) (the importance-sampled
            # NLL's 5,000 rows x 784 x M floats), out of the CPU's caches between the ops an eager run makes
            inputs = self._unit_inputs(x, context)  # (M, B, D)
            slope, out = self._per_value(self.unit_logit), self._per_value(self.unit_out)  # (M, D or 1)
            params = params.float()
            # fp32 throughout, outside bf16 autocast: it would cast at every op
            with torch.autocast(params.device.type, enabled=False):
                for m in range(self.units):
                    logits = logits + F.relu(torch.addcmul(inputs[m], params, slope[m])) * out[m]
        return logits

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits l(z) (..., B, D) and x (B, D) -> log p(x | z) (..., B): the Bernoulli log-probability of x at
        its conditional logits (``logits``), summed over the values in any order."""
        params, x = self._ordered(params), self._ordered(x)
        return super().log_prob(self.logits(params, x), x)

    def _ordered(self, values: torch.Tensor) -> torch.Tensor:
        """(..., D) in the image's raster order -> (..., D) in the order the values condition on each other
        (the same tensor for "rows"). ``logits``, ``context`` and ``linear`` work in the latter."""
        return values if self.order_index is None else values[..., self.order_index]

    def _unordered(self, values: torch.Tensor) -> torch.Tensor:
        """The inverse of ``_ordered``: (..., D) back in the image's raster order."""
        return values if self.order_inverse is None else values[..., self.order_inverse]

    @torch.no_grad()
    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """Pictures: each value's probability given the probabilities before it (the mean-field approximation of
        E[x | z], one value at a time in raster order; the exact mean needs sampling): (..., D) -> (..., D). The
        hidden units' inputs grow by one value a step, so the whole pass costs about one ``context``."""
        return self._unordered(self._in_raster_order(self._ordered(params)))

    @torch.no_grad()
    def draw(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Values drawn from p(x | z) by ancestral sampling: x_0 from its logit, then each x_i given the values
        drawn before it, in raster order; exact, where ``mean`` is an approximation: (..., D) -> (..., D) of 0 and 1.
        """
        return self._unordered(self._in_raster_order(self._ordered(params), draw=True, generator=generator))

    def _in_raster_order(self, params: torch.Tensor, draw: bool = False,
                         generator: torch.Generator | None = None) -> torch.Tensor:
        """One value at a time, each conditioned on the ones before it: their probabilities (``mean``) or, with
        ``draw``, values drawn from them (``draw``): logits l(z) (..., D) -> (..., D) fp32."""
        flat = params.reshape(-1, params.shape[-1]).float()  # (N, D)
        linear = self.linear().float()
        # (N, D + 1): the values so far, then a 0 that the units' taps outside the image read
        values = torch.zeros(flat.shape[0], flat.shape[-1] + 1, device=flat.device)
        if self.hidden:
            u = (self.hidden_in.weight * self.in_mask).float()  # (H, D)
            v = (self.hidden_out * self.out_mask).float()  # (D, H)
            pre = self.hidden_in.bias.float().expand(flat.shape[0], -1).clone()  # (N, H): no value read yet
        if self.units:
            plane = self.image_shape[1] * self.image_shape[2]
            kernel = (self.unit_kernel * self.unit_mask).float()  # (C, M, T)
        for i in range(flat.shape[-1]):
            context = values[:, :i] @ linear[i, :i]
            logit = flat[:, i] + context
            if self.hidden:
                logit = logit + F.relu(pre) @ v[i]
            if self.units:
                c, s = divmod(i, plane)
                units = F.relu(self.unit_logit[c].float() * flat[:, i, None] + self.unit_context[c].float()
                               * context[:, None] + values[:, self.unit_reads[:, s]] @ kernel[c].t()
                               + self.unit_bias[c].float())  # (N, M)
                logit = logit + units @ self.unit_out[c].float()
            prob = torch.sigmoid(logit)  # (N,)
            values[:, i] = torch.bernoulli(prob, generator=generator) if draw else prob
            if self.hidden:
                pre += values[:, i, None] * u[:, i]
        return values[:, :-1].reshape(params.shape)


class Gaussian(nn.Module):
    """Real values as N(mean, sigma^2); the decoder outputs the mean.

    sigma is fixed, or one value learned for all dimensions (the sigma-VAE of Rybkin et al. 2021).
    """

    sequential_mean = False

    def __init__(self, sigma: float = 1.0, learned: bool = False):
        super().__init__()
        self.name = "gaussian-learned" if learned else "gaussian"
        log_sigma = torch.tensor(math.log(sigma))
        if learned:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # log N(x; m, s^2) = -0.5 ((x - m) / s)^2 - log s - 0.5 log(2 pi), summed over D: (..., D) -> (...),
        # x broadcast like Bernoulli's
        log_sigma = self._log_sigma()
        z = (x - params) * torch.exp(-log_sigma)
        return -0.5 * z.pow(2).sum(-1) - x.shape[-1] * (log_sigma + 0.5 * math.log(2 * math.pi))

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return params

    def draw(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Values drawn from N(mean, sigma^2): means (..., D) -> (..., D) fp32."""
        noise = torch.randn(params.shape, generator=generator, device=params.device)
        return params.float() + noise * torch.exp(self._log_sigma())

    def _log_sigma(self) -> torch.Tensor:
        """log sigma, fp32; a learned one floored at LOG_SIGMA_MIN."""
        log_sigma = self.log_sigma.float()
        return log_sigma.clamp(min=LOG_SIGMA_MIN) if isinstance(self.log_sigma, nn.Parameter) else log_sigma


LIKELIHOODS = {
    "bernoulli": lambda cfg: Bernoulli(),
    "bernoulli-autoregressive": lambda cfg: AutoregressiveBernoulli(math.prod(cfg.input_shape),
                                                                    cfg.autoregressive_hidden,
                                                                    cfg.autoregressive_window, cfg.input_shape,
                                                                    cfg.autoregressive_units,
                                                                    cfg.autoregressive_order),
    "gaussian": lambda cfg: Gaussian(cfg.gaussian_sigma),
    "gaussian-learned": lambda cfg: Gaussian(cfg.gaussian_sigma, learned=True),
}
# the likelihoods of values in [0, 1] (binary or grey levels): dynamic binarisation, noise that corrupts within
# [0, 1] and the VampPrior's bounded pseudo-inputs apply to these
UNIT_INTERVAL = frozenset({"bernoulli", "bernoulli-autoregressive"})
