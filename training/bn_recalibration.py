"""Inference BN moments recomputed after training (paper section 3.2.1).

As many minibatches as the (augmented) training set gives are passed through the trained
network in training mode; each BN's inference mean and variance become the average of the
per-batch moments, instead of the running averages kept during training.
"""
import torch


@torch.no_grad()
def recalibrate_batchnorm(model, batches, dist):
    """`batches` yields float image tensors; returns the number of batches used per process."""
    bns = [m for _, m in model.batchnorms()]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # None = cumulative average of the batch moments
    model.train()
    quant = getattr(model, "act_quant", None)
    if quant is not None:      # the BN moments only: the activations' scales stay as trained
        quant.frozen = True
    count = 0
    for x in batches:
        model(x)
        count += 1
    if quant is not None:
        quant.frozen = False
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
        # Every process saw the same number of batches, so the mean of means is exact.
        dist.average_(m.running_mean)
        dist.average_(m.running_var)
    model.eval()
    return count
