"""Training step time of the 1-bit network vs the same network in full precision.

The paper claims 1-bit-per-weight trains as fast as full precision: the sign and scale add
one elementwise pass over the weights per step, negligible next to the convolutions.

    python -m bench.train_step [--depth 20] [--width 1] [--size 28] [--channels 1] [--steps 20]
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F

from training.model import WideResNet
from training.train import BATCH_SIZE, make_optimizer


def step_time(weights, args):
    torch.manual_seed(0)
    model = WideResNet(args.depth, args.width, args.channels, 10, args.size, weights)
    optimizer = make_optimizer(model, argparse.Namespace(weight_decay=5e-4, lr_max=0.1))
    x = torch.rand(BATCH_SIZE, args.channels, args.size, args.size) * 255
    y = torch.randint(0, 10, (BATCH_SIZE,))
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]  # median: robust to the odd slow step


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.train_step", description=__doc__.split("\n")[0])
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--width", type=int, default=1)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args(argv)
    # Interleave the two modes so that drifting machine load hits both alike.
    one_bit, full = [], []
    for _ in range(2):
        one_bit.append(step_time("1bit", args))
        full.append(step_time("float", args))
    result = dict(benchmark="train_step", model=f"WRN-{args.depth}-{args.width}",
                  input=[args.channels, args.size, args.size], batch=BATCH_SIZE,
                  threads=torch.get_num_threads(), step_s_1bit=min(one_bit),
                  step_s_float=min(full), ratio_1bit_over_float=min(one_bit) / min(full))
    print(f"WRN-{args.depth}-{args.width}, batch {BATCH_SIZE} of {args.channels}x{args.size}x{args.size}, "
          f"{result['threads']} threads: 1bit {result['step_s_1bit'] * 1e3:.1f} ms/step, "
          f"float {result['step_s_float'] * 1e3:.1f} ms/step, ratio 1bit/float "
          f"{result['ratio_1bit_over_float']:.3f}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
