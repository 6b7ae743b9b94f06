"""Test log-likelihood on statically binarized MNIST (Larochelle & Murray 2011), k = 5000 importance samples.

    python bench/nll_binarized.py [--minutes 60] [--k 5000] [--nll-items 10000] [--conv-nll-items 2000]
                                  [--models mlp,conv,iwae,conv-iwae,vamp,hvae-vamp,...] [--binarize dynamic]
                                  [--threads N] [--keep DIR [--train-only]]
    python bench/nll_binarized.py --mixture DIR/A,DIR/B [--threads N]   # the uniform mixture of two kept runs

Each model trains within a wall-clock budget (``--minutes``, at most 60 on the 2-core CPU) with Adam at a
constant 1e-3, batch 128 (unless its settings below say otherwise), and keeps the epoch with the best validation
loss (the data's own 10,000-image validation split); then its test NLL is estimated with k importance samples
on ``--nll-items`` test images (``--conv-nll-items`` for the conv models, whose evaluation is ~10x slower on a
CPU), a seeded random subset when fewer than all. Prints the table beside published figures on the same data
and writes JSON; rows of models not run this time are kept from the existing JSON, each with its own budget and
item count. With ``--binarize dynamic`` the training pixels are drawn afresh each batch from MNIST's grey
levels (the test set once, seeded), and the JSON is ``nll_dynamic.json``.

A mixture in one CPU hour: two models trained side by side, one thread each (``--keep DIR --train-only``, one
process per model), then ``--mixture`` scores their uniform mixture p(x) = (p_A(x) + p_B(x)) / 2 and each member
on the same test images (``vaekit.evaluate`` of both runs).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import vaekit
from vaekit.tensors import describe_machine

HERE = Path(__file__).resolve().parent
# Published test NLLs (nats), each with its source. Tomczak & Welling (2018) trained for up to 2,000 epochs with
# early stopping (patience 50) on a GPU; the VampPrior figures are as issue #17 cites them (85.57, 81.09 and 79.78
# were matched against secondary sources in this session; the papers' own tables were not reachable offline).
PUBLISHED_DYNAMIC = {"VAE (Burda et al. 2016, dynamic)": 86.76, "IWAE k=50 (Burda et al. 2016, dynamic)": 84.78,
                     "IWAE k=50, two stochastic layers (Burda et al. 2016, dynamic)": 82.90}
PUBLISHED = {"IWAE k=50 (Burda et al. 2016, static)": 87.10, "VAE (pythae reproduction, 200 samples)": 89.78,
             "VAE, standard prior (Tomczak & Welling 2018)": 88.56,
             "VAE + VampPrior (Tomczak & Welling 2018)": 85.57,
             "HVAE (L=2) + VampPrior (Tomczak & Welling 2018)": 83.19,
             "convHVAE (L=2) + VampPrior (Tomczak & Welling 2018)": 81.09,
             "PixelHVAE + VampPrior (Tomczak & Welling 2018)": 79.78}
# the dynamic recipe behind 83.40: the HVAE + VampPrior preset at batch 250, cosine lr from 1e-3 (at batch 500 the
# README's 82.95, below)
B250_COSINE = dict(preset="hvae-vampprior", batch_size=250, lr=1e-3, lr_schedule="cosine", warmup_epochs=1)
B500_COSINE = dict(preset="hvae-vampprior-b500", compile=True)
# the recipe of vaekit's best static models (the -wd01-ar-w1-trainval entry below): the batch-500 cosine HVAE with
# weight decay 0.1, an autoregressive likelihood reading one row above each pixel, trained on train + validation;
# the IWAE-phase variants are overrides of it
WD01_AR_W1_TRAINVAL = {**B500_COSINE, "patience": 0, "weight_decay": 0.1, "likelihood": "bernoulli-autoregressive",
                       "autoregressive_window": 1, "validation": "train"}
MODELS = {
    "mlp": dict(hidden=(512, 256), latent_dim=32),
    "conv": dict(arch="conv", hidden=(256,), latent_dim=32),
    "iwae": dict(hidden=(512, 256), latent_dim=32, iw_samples=50),
    "conv-iwae": dict(arch="conv", hidden=(256,), latent_dim=32, iw_samples=5),
    # issue #17: the VampPrior (Tomczak & Welling 2018: K = 500 pseudo-inputs, two hidden layers of 300, 40 latent
    # dims; ReLU here where the paper has gated units: measured no better, see bench/README.md) with one and two
    # stochastic layers
    "vamp": dict(hidden=(300, 300), latent_dim=40, prior="vamp", prior_components=500),
    "hvae-vamp": dict(hidden=(300, 300), latent_dim=40, hierarchy=(40,), prior="vamp", prior_components=500),
    # the VampPrior paper's recipe (the presets: KL warm-up over 100 epochs, lr 5e-4, batch 100, config.py)
    "vamp-paper": dict(preset="vampprior"),
    "hvae-vamp-paper": dict(preset="hvae-vampprior"),
    # the recipe at batch 250 (lr scaled by sqrt(2.5)): the 500 pseudo-inputs go through the encoder once a step
    # whatever the batch, so a larger batch makes epochs ~1.5x faster on one CPU thread
    "hvae-vamp-paper-b250": dict(preset="hvae-vampprior", batch_size=250, lr=8e-4),
    # the same with the lr's cosine decay ending with the budget (a cosine under --max-minutes does)
    "hvae-vamp-paper-cosine": dict(preset="hvae-vampprior", lr_schedule="cosine", warmup_epochs=1),
    # batch 250 with the lr's cosine decay ending with the budget, from a peak of 1e-3 (the dynamic b250 run was
    # still improving at its end with a constant lr)
    "hvae-vamp-paper-b250-cosine": B250_COSINE,
    # the same trained on the IWAE bound with k = 5 (Burda et al. 2016 train their two-layer model on it, no KL
    # warm-up; their k = 50 row is the 82.90 above), torch.compile'd (~10 % faster steps here); a step costs ~2x
    # the ELBO's, so about half the epochs fit the budget. Measured worse on dynamic data in 60 CPU minutes: 84.04
    # (195 epochs) against 83.40 (358 epochs, the ELBO); kept as the row's recipe (bench/README.md)
    "hvae-vamp-paper-b250-cosine-iwae5": {**B250_COSINE, "iw_samples": 5, "kl_warmup": 0, "compile": True},
    # the b250-cosine recipe (the ELBO) at batch 500, lr scaled by sqrt(2), compiled: the pass of the 500
    # pseudo-inputs is spread over twice the items, so an epoch takes ~25 % less time here (~6.4 s against ~8.6 s),
    # at half the steps per epoch.
    # Measured on dynamic data in 60 CPU minutes: 82.95 (543 epochs) against 83.40 (358 epochs, batch 250). The
    # settings became the preset hvae-vampprior-b500 (the same as B250_COSINE with batch 500 and lr 1.4e-3)
    # On static data (2026-12-02, AVX512-BF16 CPU, one thread beside another run): 85.15 (741 epochs, best 740); alone
    # on 2 threads 85.54, stopped by the preset's patience at epoch 452 (see -nopatience)
    "hvae-vamp-paper-b500-cosine": B500_COSINE,
    # the same with another seed of the weights, batches and sampled z (the test set's binarization stays seeded 0):
    # how far 82.95 moves with the draw. Measured: 83.16 (536 epochs)
    "hvae-vamp-paper-b500-cosine-seed1": {**B500_COSINE, "seed": 1},
    # a third seed, so the recipe's figure is a mean of three draws. Measured: 82.98 (540 epochs; mean of three 83.03).
    # (Batch 1000 was probed instead: epochs took only ~12 % less time than at batch 500, 5.7 s against 6.5 s, at
    # half the steps, so not tried for an hour)
    "hvae-vamp-paper-b500-cosine-seed2": {**B500_COSINE, "seed": 2},
    # a fourth seed, run on an AVX512-BF16 CPU where the compiled bf16 step is ~2x faster (epochs of 2.8-3.8 s against
    # ~6.5 s on the AVX2 CPU of seeds 0-2): the hour holds twice the epochs. Measured: 82.54 (1,039 epochs)
    "hvae-vamp-paper-b500-cosine-seed3": {**B500_COSINE, "seed": 3},
    # the same without early stopping (the preset's patience of 50 epochs is the paper's, for a constant lr): on static
    # data with 2 threads the cosine, stretched over the ~960 epochs the hour would hold, kept the lr high long enough
    # for a 50-epoch plateau, and the run stopped at epoch 452 of them (best 402) before the decay that made the
    # one-thread run's last 300 epochs its best (85.54 against 85.15). Measured (2 threads, 2026-12-02): 85.47,
    # 1,205 epochs, best 477: the validation bound did not improve in the decay, the model overfits instead
    "hvae-vamp-paper-b500-cosine-nopatience": {**B500_COSINE, "patience": 100_000},
    # the same (early stopping off) with AdamW's decoupled weight decay of 0.05 (each step shrinks the weights by lr x
    # 0.05): on static data the validation bound worsens after ~500 epochs while the training bound keeps falling
    # (overfitting, bench/README.md). Probed (40 min, 1 thread beside the -nopatience run, 2,000 test images):
    # 85.19 against 85.39, -ELBO 90.17 against 90.56. For the hour (one thread, beside -wd015, 2026-12-02 (g)): 84.75
    "hvae-vamp-paper-b500-cosine-wd": {**B500_COSINE, "patience": 0, "weight_decay": 0.05},
    # the same with three times the decay (each step shrinks the weights by lr x 0.15), run beside -wd for the hour
    # (one thread each, 2026-12-02 (g)): 84.55 against -wd's 84.75 and the plain recipe's 85.15 (session e), the
    # validation -ELBO 89.52 at best against 90.34; vaekit's best static figure on one thread
    "hvae-vamp-paper-b500-cosine-wd015": {**B500_COSINE, "patience": 0, "weight_decay": 0.15},
    # the -wd015 recipe alone on the machine, --threads 2 (every other static row ran on one thread beside another
    # run): what the whole 2-core CPU gives in the hour. -wd015's validation bound still improved at its end.
    # Measured (2026-12-03 (i)): 84.35, 1,282 epochs (best 1,233), vaekit's best static figure
    "hvae-vamp-paper-b500-cosine-wd015-alone": {**B500_COSINE, "patience": 0, "weight_decay": 0.15},
    # the -wd015 recipe with Polyak averaging (--weight-average): validation, the model file and the test read an
    # exponential moving average of the weights. Under the cosine the lr's decay already calms the last epochs'
    # weights; 0.9995 averages over ~2,000 steps, ~20 epochs of 100 steps. Probed for 40 minutes beside -wd015
    # (2026-12-03 (i), one thread each): 84.99 against 84.79: ahead while the lr was high, stalled in the decay
    "hvae-vamp-paper-b500-cosine-wd015-avg": {**B500_COSINE, "patience": 0, "weight_decay": 0.15,
                                              "weight_average": 0.9995},
    # the average in place of the lr's decay: a constant lr (1.4e-3, no warm-up) and a longer average,
    # 0.9998 (~5,000 steps, ~50 epochs), as VDVAE-style training does (Child 2021). Untried
    "hvae-vamp-paper-b500-constant-wd015-avg": {**B500_COSINE, "lr_schedule": "constant", "patience": 0,
                                                "weight_decay": 0.15, "weight_average": 0.9998},
    # the -wd015 recipe with an autoregressive Bernoulli likelihood (--likelihood bernoulli-autoregressive): each
    # pixel's logit adds a masked linear function of the pixels before it (raster order) to the decoder's, what the
    # PixelHVAE of Tomczak & Welling (79.78) does with masked convolutions; one extra matmul a batch. Measured
    # (2026-12-03 (j), alone, 2 threads): 83.81, 949 epochs (best 915), -ELBO 86.82, against -wd015-alone's 84.35
    "hvae-vamp-paper-b500-cosine-wd015-ar": {**B500_COSINE, "patience": 0, "weight_decay": 0.15,
                                             "likelihood": "bernoulli-autoregressive"},
    # the same with weight decay 0.3: the AR run overfits more than the plain one (train 80.76 against validation
    # 87.42 at its end, against 83.44 and 89.30). Probed for 20 minutes beside -wd015-ar (one thread each, 1,000
    # test images, k = 1000): 85.02 against 85.05, no difference yet; the hour is untried
    "hvae-vamp-paper-b500-cosine-wd03-ar": {**B500_COSINE, "patience": 0, "weight_decay": 0.3,
                                            "likelihood": "bernoulli-autoregressive"},
    # the -wd015-ar recipe with a local masked layer (--autoregressive-window 2): each pixel reads its own row left
    # of it and the 2 rows above (~70 weights a pixel against up to 783), against the AR run's overfitting. Probed
    # for 15 minutes beside -wd015-ar (one thread each, k = 1000 on 1,000 test images): 85.08 against 85.55. For the
    # hour (2026-12-03 (k), one thread beside -w1): 83.33, 672 epochs (best 660), -ELBO 86.48
    "hvae-vamp-paper-b500-cosine-wd015-ar-w2": {**B500_COSINE, "patience": 0, "weight_decay": 0.15,
                                                "likelihood": "bernoulli-autoregressive", "autoregressive_window": 2},
    # the same with a window of 1 row (~42 weights a pixel). Measured beside -w2 (2026-12-03 (k)): 83.29, 676 epochs
    # (best 656), -ELBO 86.59: level with -w2, vaekit's best static figure
    "hvae-vamp-paper-b500-cosine-wd015-ar-w1": {**B500_COSINE, "patience": 0, "weight_decay": 0.15,
                                                "likelihood": "bernoulli-autoregressive", "autoregressive_window": 1},
    # -w1 trained on the 60,000 training and validation images together (--validation train; no model selection:
    # every static -wd015 run's best validation epoch was within ~50 of its last, of 480-1,282, so the last epoch's
    # model is kept). Static data overfit (train 82.26 against validation 87.18 at -w1's end), and dynamic data, where
    # every batch is a fresh draw, reach 82.54 with the plain likelihood: more items are the direct remedy. Each epoch
    # holds 20 % more items. Tomczak & Welling train on the 50,000 alone. Measured (2026-12-03 (m), one thread beside
    # -sp005): 82.96, 614 epochs, -ELBO 86.00, against -w1's 83.29 and 83.32. Alone on 2 threads (2026-12-03 (n)):
    # 82.71, 962 epochs, -ELBO 85.76, vaekit's best static figure
    "hvae-vamp-paper-b500-cosine-wd015-ar-w1-trainval": {**B500_COSINE, "patience": 0, "weight_decay": 0.15,
                                                         "likelihood": "bernoulli-autoregressive",
                                                         "autoregressive_window": 1, "validation": "train"},
    # the same with weight decay 0.1: with 20 % more images the recipe may need less of it. Measured (2026-12-04 (p),
    # alone on 2 threads): 82.69, 1,013 epochs, -ELBO 85.94, against 0.15's 82.71: level
    "hvae-vamp-paper-b500-cosine-wd01-ar-w1-trainval": {**B500_COSINE, "patience": 0, "weight_decay": 0.1,
                                                        "likelihood": "bernoulli-autoregressive",
                                                        "autoregressive_window": 1, "validation": "train"},
    # the same with another seed: with the seed-0 run beside it (one thread each, the same CPU hour), the two members
    # of a uniform mixture p(x) = (p1(x) + p2(x)) / 2, whose NLL is at most their mean NLL less the mean of
    # log cosh(d / 2), d = log p1(x) - log p2(x) per test image
    "hvae-vamp-paper-b500-cosine-wd01-ar-w1-trainval-seed1": {**B500_COSINE, "patience": 0, "weight_decay": 0.1,
                                                              "likelihood": "bernoulli-autoregressive",
                                                              "autoregressive_window": 1, "validation": "train",
                                                              "seed": 1},
    # the seed-1 twin with its values in column order (--autoregressive-order columns: each pixel reads the column
    # left of it and the pixels above it, not the row above): the second member of a mixture with -wd01-ar-w1-
    # trainval, trained beside it (one thread each, the same CPU hour). Two seeds of one order mixed to 82.44
    # (members 82.87, 82.82; their per-image log-likelihoods correlated 0.9945); a member of each order errs on
    # other images, which is what a mixture gains from
    "hvae-vamp-paper-b500-cosine-wd01-ar-w1-trainval-columns": {**B500_COSINE, "patience": 0, "weight_decay": 0.1,
                                                                "likelihood": "bernoulli-autoregressive",
                                                                "autoregressive_window": 1, "validation": "train",
                                                                "autoregressive_order": "columns", "seed": 1},
    # -wd01-ar-w1-trainval with K = 250 pseudo-inputs instead of 500: the VampPrior's K pseudo-inputs pass through
    # q(z2|x) every step, about a quarter of a step's multiply-adds at batch 500 (by the layer sizes), so half of
    # them buys more epochs in the CPU hour, against a coarser prior. Run for the hour beside -wd01-ar-w1-trainval
    # (one thread each, the same seed)
    "hvae-vamp-paper-b500-cosine-wd01-ar-w1-trainval-k250": {**B500_COSINE, "patience": 0, "weight_decay": 0.1,
                                                             "likelihood": "bernoulli-autoregressive",
                                                             "autoregressive_window": 1, "validation": "train",
                                                             "prior_components": 250},
    # -wd01-ar-w1-trainval on the ELBO for the first half of the schedule (its KL warm-up included), then on the
    # IWAE bound with K = 5 (--iw-samples 5 --iw-from 0.5): Burda et al. (2016, sec. 5.2) trained VAEs further on
    # the IWAE bound and report a better test log-likelihood (recalled, not checked here: the paper is not
    # reachable from this machine), the bound's gain being in p, not only in the estimate. A K = 5 step costs
    # ~2.35x an ELBO step here (one thread, compiled: 110 against 47 ms). Two seeds, side by side (one thread each):
    # the members of a mixture, and two reads of the change against the ELBO runs' 82.82-82.96. Measured (2026-12-04
    # (t), when the budget's cosine re-planned with a jump at the switch, the lr 6.9e-4 -> 2.5e-4): 467 and 465
    # epochs, 82.70 and 82.70, their mixture 82.29. Then (u) with the lr continuous there (objectives.Schedule):
    # 82.69 and 83.37 (a loss spike in the bound's phase at lr 3.3e-4), mixture 82.53 (bench/README.md)
    "hvae-vamp-paper-b500-cosine-wd01-ar-w1-trainval-iw5-from05": {
        **WD01_AR_W1_TRAINVAL, "iw_samples": 5, "iw_from": 0.5},
    "hvae-vamp-paper-b500-cosine-wd01-ar-w1-trainval-iw5-from05-seed1": {
        **WD01_AR_W1_TRAINVAL, "iw_samples": 5, "iw_from": 0.5, "seed": 1},
    # the same with K = 2: a K = 2 step costs ~1.45x an ELBO step against ~2.35x for K = 5, so the bound's phase
    # holds ~60 % more epochs. Probed for 35 minutes beside the ELBO-only recipe (2026-12-04 (u)): bench/README.md
    "hvae-vamp-paper-b500-cosine-wd01-ar-w1-trainval-iw2-from05": {
        **WD01_AR_W1_TRAINVAL, "iw_samples": 2, "iw_from": 0.5},
    # its seed-1 twin: the K = 2 pair for the hour (one thread each, side by side), then their mixture. Measured
    # (2026-12-04 (v)): 614 and 616 epochs, 82.60 and 82.76, their mixture 82.26, vaekit's best static figure
    "hvae-vamp-paper-b500-cosine-wd01-ar-w1-trainval-iw2-from05-seed1": {
        **WD01_AR_W1_TRAINVAL, "iw_samples": 2, "iw_from": 0.5, "seed": 1},
    # the K = 2 pair again, its second member in column order (a member of each order mixed 0.03-0.06 nats better
    # than two seeds of one, session r), both with --on-spike rollback (an epoch whose loss jumps by half is undone
    # and trained again at half the lr: the remedy for session u's spike; inert without one). For the hour side by
    # side (one thread each), then their mixture. Measured (2026-12-05 (w)): 573 and 534 epochs, no spike, 82.74 and
    # 82.83, their mixture 82.30 (session v's pair: 82.26)
    "hvae-vamp-paper-b500-cosine-wd01-ar-w1-trainval-iw2-from05-rollback": {
        **WD01_AR_W1_TRAINVAL, "iw_samples": 2, "iw_from": 0.5, "on_spike": "rollback"},
    "hvae-vamp-paper-b500-cosine-wd01-ar-w1-trainval-columns-iw2-from05-rollback": {
        **WD01_AR_W1_TRAINVAL, "iw_samples": 2, "iw_from": 0.5, "on_spike": "rollback",
        "autoregressive_order": "columns", "seed": 1},
    # K = 2 from 0.3 of the schedule instead of half: the bound's phase paid at K = 2 (-iw2-from05's 82.60 and 82.76
    # against the ELBO's 82.82-82.96 on one thread), so more of it may pay more. Probed for 35 minutes beside
    # -iw2-from05 (2026-12-05 (v)): 83.14 against 83.07 (2,000 items), 334 epochs against 359: no gain
    "hvae-vamp-paper-b500-cosine-wd01-ar-w1-trainval-iw2-from03": {
        **WD01_AR_W1_TRAINVAL, "iw_samples": 2, "iw_from": 0.3},
    # the K = 2 pair with the KL warm-up over 30 epochs instead of the preset's 100 (the VampPrior paper's, for up
    # to 2,000 epochs on a GPU): in the CPU hour's ~600 epochs, 100 are a sixth of the run spent on a loosened
    # bound. Without any warm-up the autoregressive likelihood lets the code collapse (bench/README.md, session j);
    # 30 epochs keep the ramp. Two seeds side by side (one thread each), then their mixture, against session v's
    # pair of the same recipe with 100 (82.60, 82.76; mixture 82.26). Measured (2026-12-05 (x)): 82.91 and 82.91,
    # mixture 82.46: a lower training loss, a worse test one (the ramp regularises too); 100 stays
    "hvae-vamp-paper-b500-cosine-wd01-ar-w1-trainval-iw2-from05-klw30": {
        **WD01_AR_W1_TRAINVAL, "iw_samples": 2, "iw_from": 0.5, "kl_warmup": 30, "on_spike": "rollback"},
    "hvae-vamp-paper-b500-cosine-wd01-ar-w1-trainval-iw2-from05-klw30-seed1": {
        **WD01_AR_W1_TRAINVAL, "iw_samples": 2, "iw_from": 0.5, "kl_warmup": 30, "on_spike": "rollback", "seed": 1},
    # the other way: the warm-up over 200 epochs, a third of the hour's. 30 trained further on the training images
    # and scored worse, so the ramp regularises; whether more of it pays is this pair's question (the same two
    # seeds, side by side, one thread each, then their mixture). Measured (trained 2026-12-05 (x) with tests beside
    # for 40 of the 60 minutes, scored in (y)): 567 epochs each, 82.83 and 82.68, mixture 82.35: no gain; 100 stays
    "hvae-vamp-paper-b500-cosine-wd01-ar-w1-trainval-iw2-from05-klw200": {
        **WD01_AR_W1_TRAINVAL, "iw_samples": 2, "iw_from": 0.5, "kl_warmup": 200, "on_spike": "rollback"},
    "hvae-vamp-paper-b500-cosine-wd01-ar-w1-trainval-iw2-from05-klw200-seed1": {
        **WD01_AR_W1_TRAINVAL, "iw_samples": 2, "iw_from": 0.5, "kl_warmup": 200, "on_spike": "rollback", "seed": 1},
    # the K = 2 pair (warm-up 100) with AdamW's decay on the weight matrices only (--weight-decay-scope weights):
    # every decayed recipe so far also shrank the biases and the VampPrior's 500 pseudo-inputs (392,000 of the
    # model's 2.29 M parameters), pulling those data-space points towards a black image each step by lr x 0.1 of
    # their value; the usual practice (Loshchilov & Hutter 2019's code, most transformer recipes) decays weights
    # alone. Two seeds side by side (one thread each), then their mixture, against session v's pair (82.60, 82.76;
    # mixture 82.26). Measured (2026-12-05 (y)): seed 0 82.75 (597 epochs); seed 1 collapsed in its IWAE phase
    # through the bf16 rounding of the VampPrior's log-density (fixed since; bench/README.md), so no mixture
    "hvae-vamp-paper-b500-cosine-wd01w-ar-w1-trainval-iw2-from05": {
        **WD01_AR_W1_TRAINVAL, "iw_samples": 2, "iw_from": 0.5, "weight_decay_scope": "weights",
        "on_spike": "rollback"},
    "hvae-vamp-paper-b500-cosine-wd01w-ar-w1-trainval-iw2-from05-seed1": {
        **WD01_AR_W1_TRAINVAL, "iw_samples": 2, "iw_from": 0.5, "weight_decay_scope": "weights",
        "on_spike": "rollback", "seed": 1},
    # the -wd015 trainval recipe at batch 1000, lr 2e-3 (1.4e-3 x sqrt(2)): the next step of the batch ladder that
    # paid per CPU hour on dynamic data (batch 100 -> 250 -> 500: 84.71 -> 83.40 -> 82.95), larger matmuls and the
    # pseudo-inputs' pass spread over twice the items. AdamW's decay per epoch (decay x lr x steps) is then 0.15 x
    # 2e-3 x 60 = 0.018, about the 0.1 recipe's 0.1 x 1.4e-3 x 120 = 0.017 at batch 500. Probed for 3 minutes
    # beside -wd01-ar-w1-trainval (2026-12-04 (q), one thread each, AVX512-BF16 CPU): 33 epochs against 32, train
    # -ELBO 98.78 against 98.17: no faster an epoch on this CPU, half the steps; not run for the hour
    "hvae-vamp-paper-b1000-cosine-wd015-ar-w1-trainval": {**B500_COSINE, "batch_size": 1000, "lr": 2e-3,
                                                          "patience": 0, "weight_decay": 0.15,
                                                          "likelihood": "bernoulli-autoregressive",
                                                          "autoregressive_window": 1, "validation": "train"},
    # -w1 with the encoder reading corrupted images (--noise salt-pepper:0.05: each value set to 0 or 1 with
    # probability 0.05) and the likelihood the clean ones: the denoising VAE (Im et al. 2017), which amortized
    # inference regularization (Shu et al. 2018) found to curb the decoder's overfitting through a smoother encoder.
    # The test NLL's proposal reads the clean images (vaekit.evaluate); its -ELBO is for corrupted ones (clean_loss
    # the clean ones', recorded since 2026-12-03 (n)). Measured
    # (2026-12-03 (m), one thread beside -trainval): 83.44, 603 epochs (best 585), clean test -ELBO 86.47: no gain
    "hvae-vamp-paper-b500-cosine-wd015-ar-w1-sp005": {**B500_COSINE, "patience": 0, "weight_decay": 0.15,
                                                      "likelihood": "bernoulli-autoregressive",
                                                      "autoregressive_window": 1, "noise": "salt-pepper:0.05"},
    # -w1 with 300 MADE-masked hidden units (global: each reads every value before its degree), now that the linear
    # part overfits less. Probed for 20 minutes beside -w1 (2026-12-03 (k), one thread each, k = 1000 on 1,000 test
    # images): 85.23 (180 epochs) against 84.55 (213): the units still cost more than they give at that budget
    "hvae-vamp-paper-b500-cosine-wd015-ar-w1-h300": {**B500_COSINE, "patience": 0, "weight_decay": 0.15,
                                                     "likelihood": "bernoulli-autoregressive",
                                                     "autoregressive_window": 1, "autoregressive_hidden": 300},
    # -w1 with 8 nonlinear units a pixel (--autoregressive-units 8): ReLUs of the decoder's logit, the linear context
    # and a masked 3 x 5 convolution of the pixels around it (weights shared across positions), so how much the
    # neighbours count can depend on the decoder (PixelVAE's idea at the cost of elementwise work per sample of z).
    # Probed for 20 minutes beside -w1 (2026-12-03 (l), one thread each, k = 1000 on 1,000 test images), with the
    # units' convolution then through conv2d (2x slower epochs): 84.57 (118 epochs) against 84.52 (220)
    "hvae-vamp-paper-b500-cosine-wd015-ar-w1-u8": {**B500_COSINE, "patience": 0, "weight_decay": 0.15,
                                                   "likelihood": "bernoulli-autoregressive",
                                                   "autoregressive_window": 1, "autoregressive_units": 8},
    # the same with 4 units: half the elementwise work a sample of z (the importance-sampled NLL's cost). For the
    # hour beside -w1 (2026-12-03 (l), one thread each): 83.49, 480 epochs (best 474), -ELBO 86.83, against -w1's
    # 83.32 (670 epochs): ahead per epoch, behind per CPU minute
    "hvae-vamp-paper-b500-cosine-wd015-ar-w1-u4": {**B500_COSINE, "patience": 0, "weight_decay": 0.15,
                                                   "likelihood": "bernoulli-autoregressive",
                                                   "autoregressive_window": 1, "autoregressive_units": 4},
    # the same with H hidden units in the masked layer (MADE's masks; --autoregressive-hidden H). Probed for 8
    # minutes (one thread each, 1,000 test images, k = 1000): 88.71 with 500 units, 89.55 with 1,000, against 86.77
    # for the linear layer and 87.61 for the plain recipe: slower epochs that the hidden units do not repay so early
    "hvae-vamp-paper-b500-cosine-wd015-ar500": {**B500_COSINE, "patience": 0, "weight_decay": 0.15,
                                                "likelihood": "bernoulli-autoregressive",
                                                "autoregressive_hidden": 500},
    "hvae-vamp-paper-b500-cosine-wd015-ar1000": {**B500_COSINE, "patience": 0, "weight_decay": 0.15,
                                                 "likelihood": "bernoulli-autoregressive",
                                                 "autoregressive_hidden": 1000},
    # larger decays, probed for 40 minutes side by side (2026-12-02 (g)): 85.47 with 0.3, 87.42 with 0.6 (underfits)
    "hvae-vamp-paper-b500-cosine-wd03": {**B500_COSINE, "patience": 0, "weight_decay": 0.3},
    "hvae-vamp-paper-b500-cosine-wd06": {**B500_COSINE, "patience": 0, "weight_decay": 0.6},
    # (hvae-vamp-paper-b500-cosine-wd015-normgrad, 2026-12-03 (h): the -wd015 recipe with the VampPrior paper's
    # optimiser, AdamNormGrad (each tensor's gradient divided by its L2 norm before Adam's moments; jmtomczak/
    # vae_vampprior utils/optimizer.py), an optimizer setting for the run. Measured beside the next, one thread each:
    # 84.75 against -wd015's 84.55, -ELBO 89.18 against 88.94; the setting was removed, bench/README.md)
    # the -wd015 recipe with dropout 0.1 on the generative networks' hidden units (p(x | z1, z2) and p(z1 | z2)),
    # another regulariser against static MNIST's overfitting. Measured (one thread beside the AdamNormGrad run,
    # 2026-12-03 (h)): 86.36, worse: the masks cost ~40 % per epoch (611 epochs) and the bound fits less
    "hvae-vamp-paper-b500-cosine-wd015-dropout": {**B500_COSINE, "patience": 0, "weight_decay": 0.15,
                                                  "dropout": 0.1},
    # (hvae-vamp-paper-b500-cosine-logvar6, commit 6357cbb: the same with every Gaussian layer's log-variance clamped
    # to [-6, 2] as the VampPrior paper's code bounds it, a setting --logvar-range. Measured on static data beside the
    # plain recipe, one thread each: 85.46 against 85.15, its validation -ELBO worse all along and no smaller
    # train-validation gap; the setting was removed, bench/README.md)
    # the VampPrior paper's convHVAE (L = 2; 81.09 static, its best row short of the PixelCNN decoder): the b500
    # recipe with conv networks (stride-2 convs of 32 and 64 channels, then 300-300 dense) for q(z2|x), the x
    # pathway of q(z1|x, z2) and the decoder, early stopping off. Probed on static data (2026-12-02, AVX512-BF16
    # CPU, 2 threads, --minutes 1): its first epoch took 1.4 min with compiling and loading (the MLP's take ~2.9 s),
    # and scoring ran at ~10,000 draws a second, ~80 min for k = 5000 on the 10,000 test images: it does not fit the
    # CPU hour (tens of epochs where the paper trains hundreds). Pass --conv-nll-items 10000 to score all the test
    # images. For a GPU session. On an H200 (2026-12-04 (s), bench/gpu_nll.sh, 6 minutes beside three other runs
    # and the test suite): 1.2-1.5 s an epoch, the validation -ELBO at 90.1-90.5 from epoch ~100 (train 84 ->
    # 82.5), then the loss went nan under bf16 autocast in epoch 149; its best model (epoch 118) scored 84.34
    "convhvae-vamp-b500-cosine": {**B500_COSINE, "arch": "conv", "patience": 0},
    # the convHVAE with the CPU hour's best MLP recipe on top: the autoregressive likelihood (window 1), weight decay
    # 0.1 and the validation images trained on (as -wd01-ar-w1-trainval). On the H200 beside it: train -ELBO 81.5 by
    # epoch 122, then one epoch's loss spiked to 1,118 (KL 934) under bf16 and the model came back with its latents
    # collapsed (KL 8 against 17): 92.25, its last epoch kept (no validation to pick an earlier one)
    "convhvae-vamp-b500-cosine-wd01-ar-w1-trainval": {**B500_COSINE, "arch": "conv", "patience": 0,
                                                      "weight_decay": 0.1, "likelihood": "bernoulli-autoregressive",
                                                      "autoregressive_window": 1, "validation": "train"},
    # both in fp32 (no autocast): whether the spikes were bf16's. For the next GPU session (bench/gpu_nll.sh)
    "convhvae-vamp-b500-cosine-fp32": {**B500_COSINE, "arch": "conv", "patience": 0, "precision": "fp32"},
    "convhvae-vamp-b500-cosine-wd01-ar-w1-trainval-fp32": {**B500_COSINE, "arch": "conv", "patience": 0,
                                                           "weight_decay": 0.1, "precision": "fp32",
                                                           "likelihood": "bernoulli-autoregressive",
                                                           "autoregressive_window": 1, "validation": "train"},
    "hvae-vamp-iwae": dict(hidden=(300, 300), latent_dim=40, hierarchy=(40,), prior="vamp", prior_components=500,
                           iw_samples=5),
}


def score_mixture(args: argparse.Namespace) -> dict[str, dict]:
    """The row of ``--mixture A,B``: the uniform mixture of the kept runs A and B (``vaekit.evaluate`` of both),
    scored on the test images (a seeded subset when ``--nll-items`` is fewer), with each member's own figures.
    ``--mixture A`` scores the one kept run, its row named after its folder. A run that stopped on a diverged
    loss has no summary but keeps its best model: it is scored, its training time unknown (null)."""
    from vaekit import runs as run_files

    paths = [Path(run) for run in args.mixture.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        x = vaekit.input_data(paths[0]).x
        n = min(len(x), args.nll_items)
        x = x[np.sort(np.random.default_rng(0).choice(len(x), n, replace=False))]  # as for one model, below
        np.save(Path(tmp) / "test.npy", x)
        started = time.perf_counter()
        ev = vaekit.evaluate([str(p) for p in paths], f"npy:{Path(tmp) / 'test.npy'}", nll=True, k=args.k,
                             proposal_steps=args.proposal_steps, progress=True)
    members = []
    for path, result in zip(paths, ev.pop("members") if len(paths) > 1 else [dict(ev)]):
        metrics = run_files.read_metrics(path)
        summary_file = path / run_files.SUMMARY_FILE
        summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
        members.append({"run": path.name, **result, "epochs": len(metrics), "completed": bool(summary),
                        "train_seconds": summary.get("wall_seconds"), "machine": summary.get("machine"),
                        "curve": [[m["epoch"], round(m["train_loss"], 3),
                                   round(m["val_loss"], 3) if "val_loss" in m else None]
                                  for i, m in enumerate(metrics) if i % 10 == 9 or i == len(metrics) - 1]})
        print(f"  {path.name}: {len(metrics)} epochs{'' if summary else ' (stopped early: no summary)'}, test NLL "
              f"{result['nll']:.2f} +- {result['nll_stderr']:.2f}, -ELBO {result['loss']:.2f}", flush=True)
    name = "mixture: " + " + ".join(p.name for p in paths) if len(paths) > 1 else paths[0].name
    if args.proposal_steps:  # another estimate of the same model(s): a row of its own
        name += f" (q refined per item, {args.proposal_steps} steps)"
    print(f"{name}: test NLL {ev['nll']:.2f} +- {ev['nll_stderr']:.2f} nats (k={args.k} per member, {ev['n']} "
          f"items, {time.perf_counter() - started:.0f} s)", flush=True)
    # "machine" is where the row was scored, as in every row; a member's, where it trained
    row = {**ev, "members": members} if len(paths) > 1 else {**members[0], "trained_on": members[0]["machine"]}
    return {name: {**row, "eval_seconds": time.perf_counter() - started, "threads": torch.get_num_threads(),
                   "machine": describe_machine(), "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--proposal-steps", type=int, default=0,
                        help="with --mixture: q moved per test image by this many steps before sampling "
                             "(vaekit.evaluate's proposal_steps; 0, the papers' protocol: q as trained)")
    parser.add_argument("--nll-items", type=int, default=10000)
    parser.add_argument("--conv-nll-items", type=int, default=2000)
    parser.add_argument("--models", default="mlp,conv,iwae")
    parser.add_argument("--binarize", default="none", help="none (static data) or dynamic")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", default=None, help="JSON (default bench/results/nll_binarized[_dynamic].json)")
    parser.add_argument("--keep", default=None, help="keep each run folder as KEEP/NAME (default: a temporary one)")
    parser.add_argument("--train-only", action="store_true",
                        help="train and keep (--keep), score nothing: the runs of a mixture (--mixture)")
    parser.add_argument("--mixture", default=None,
                        help="RUN,RUN[,...]: score the uniform mixture of these kept runs (and each of them) on the "
                             "test images, its row named after the runs' folders; trains nothing")
    args = parser.parse_args()
    if args.proposal_steps and not args.mixture:
        parser.error("--proposal-steps scores kept runs: pass them with --mixture")
    if args.train_only and not args.keep:
        parser.error("--train-only needs --keep DIR: the runs would be lost")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out = args.out or str(HERE / "results" / ("nll_binarized.json" if args.binarize == "none"
                                                   else "nll_dynamic.json"))
    dataset = "binarized-mnist" if args.binarize == "none" else "mnist"
    rows = {}
    if args.mixture:
        rows.update(score_mixture(args))
    for name in [] if args.mixture else args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(args.keep) / name if args.keep else Path(tmp) / "run"
            started = time.perf_counter()
            settings = MODELS[name] if "preset" in MODELS[name] else {  # without a preset: Adam 1e-3, batch 128
                "batch_size": 128, "lr": 1e-3, "lr_schedule": "constant", **MODELS[name]}
            result = vaekit.train(dataset=dataset, data_dir=args.data_dir, binarize=args.binarize,
                                  max_minutes=args.minutes, epochs=100_000, run_dir=run, progress=False,
                                  pictures=False, **settings)
            trained = time.perf_counter() - started
            if args.train_only:
                print(f"{name}: {len(result.metrics)} epochs in {trained / 60:.1f} min, kept in {run}", flush=True)
                continue
            x = vaekit.input_data(run).x
            n = min(len(x), args.conv_nll_items if MODELS[name].get("arch") == "conv" else args.nll_items)
            # a seeded random subset, never the first n: the file's first 2,000 test images are far easier
            # (a conv VAE's reconstruction error: 59 nats on them, 83 on the other 8,000)
            x = x[np.sort(np.random.default_rng(0).choice(len(x), n, replace=False))]
            np.save(Path(tmp) / "test.npy", x)
            started = time.perf_counter()
            ev = vaekit.evaluate(run, f"npy:{Path(tmp) / 'test.npy'}", nll=True, k=args.k)
            best = [m["epoch"] for m in result.metrics if m["best"]][-1]
            rows[name] = {**ev, "budget_minutes": args.minutes, "epochs": len(result.metrics), "best_epoch": best,
                          "train_seconds": trained, "eval_seconds": time.perf_counter() - started,
                          "threads": torch.get_num_threads(), "machine": describe_machine(),
                          "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                          # the training curve, every 10th epoch and the last: [epoch, train -ELBO, validation -ELBO]
                          # (null without a validation split: --validation train)
                          "curve": [[m["epoch"], round(m["train_loss"], 3),
                                     round(m["val_loss"], 3) if "val_loss" in m else None]
                                    for i, m in enumerate(result.metrics)
                                    if i % 10 == 9 or i == len(result.metrics) - 1],
                          "settings": {
                              k: list(v) if isinstance(v, tuple) else v for k, v in MODELS[name].items()},
                          # what ran, a preset's settings included
                          "config": {"model": dataclasses.asdict(result.config.model),
                                     "train": dataclasses.asdict(result.config.train)}}
        r = rows.get(name)
        if r is None:
            continue
        print(f"{name:5s} {r['epochs']:4d} epochs in {trained / 60:.1f} min (best {r['best_epoch']}): test NLL "
              f"{r['nll']:.2f} +- "
              f"{r['nll_stderr']:.2f} nats (k={args.k}, {r['n']} items, {r['eval_seconds']:.0f} s), "
              f"-ELBO {r['loss']:.2f}"
              + (f" (corrupted inputs; clean {r['clean_loss']:.2f})" if "clean_loss" in r else ""), flush=True)
    published = PUBLISHED if args.binarize == "none" else PUBLISHED_DYNAMIC
    print("published on the same data:")
    for label, value in published.items():
        print(f"  {label}: {value}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = json.loads(out.read_text())["models"] if out.exists() else {}
    out.write_text(json.dumps({"settings": vars(args), "models": {**kept, **rows}, "published": published}, indent=2))


if __name__ == "__main__":
    main()
