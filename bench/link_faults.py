"""What a noisy line costs: the host client's own code (retries, one frame ahead) against the
framed accelerator in Verilator, bits flipped on both wires and bytes dropped, per error rate.

    python -m bench.link_faults [--rates 1e-5,1e-4,1e-3] [--images 20] [--retries 3]
                                [--frame-timeout-ms 20] [--baud 12000000] [--usb]

The model: a random WRN-8-1 on 1x28x28 with 10 classes, so that the frames are the `make train`
model's (791 bytes in, 51 out) while the core computes briefly (the link, not the core, is what
is measured). For each rate r: every bit the host sends and every data bit the board sends is
flipped with probability r, every byte the host sends dropped with r / 10; --usb sends the
frames in USB packets with gaps (sim/usb_host.py). Prints and writes (bench/results/
link_faults.json) per rate: images, frames sent, answered correctly, retried, failed after the
retries, wrong answers accepted (the CRC-32 in both directions makes these 2^-32 per corrupted
reply), and images/s in simulated time. 100 MHz clock.
"""
import argparse
import os
import time

from common.files import write_json
from hw.link.protocol import FRAME_TIMEOUT_MS
from quantize.golden import run
from quantize.random_model import random_images, random_qmodel
from sim.link_session import noisy_session, tally
from sim.usb_host import usb_packets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "results")
BUILD = os.path.join(ROOT, "build", "link_faults")
CLOCK_HZ = 100_000_000


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.link_faults", description=__doc__.split("\n")[0])
    p.add_argument("--rates", default="1e-5,1e-4,1e-3", help="bit error rates, comma-separated")
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--retries", type=int, default=3)
    p.add_argument("--frame-timeout-ms", type=float, default=FRAME_TIMEOUT_MS)
    p.add_argument("--baud", type=int, default=12_000_000)
    p.add_argument("--usb", action="store_true", help="frames in USB packets with gaps")
    args = p.parse_args(argv)
    qm = random_qmodel(depth=8, width=1, in_channels=1, num_classes=10, input_size=28, seed=0)
    images = random_images(args.images, qm.input_shape, seed=31)
    golden = run(qm, images)
    print(f"{args.images} images of 1x28x28 per rate, {args.baud:,} baud, frame timeout "
          f"{args.frame_timeout_ms:g} ms, {args.retries} retries"
          + (", USB packets" if args.usb else ", frames back to back"), flush=True)
    print(f"{'bit error rate':>14} {'sent':>5} {'correct':>7} {'retried':>7} {'failed':>6} "
          f"{'wrong':>5} {'images/s':>9} {'wall s':>6}")
    rows = []
    for n, rate in enumerate(float(r) for r in args.rates.split(",")):
        t0 = time.perf_counter()
        packets = usb_packets(791 * args.images * (args.retries + 1), "high" if args.baud > 3_000_000
                              else "full", seed=n) if args.usb else None
        result = noisy_session(qm, images, os.path.join(BUILD, f"{rate:g}"), clock_hz=CLOCK_HZ,
                               baud=args.baud, frame_timeout_ms=args.frame_timeout_ms,
                               retries=args.retries, seed=n, rx_flip=rate, tx_flip=rate,
                               rx_drop=rate / 10, packets=packets, reply_timeout_s=0.05)
        row = dict(bit_error_rate=rate, **tally(result, golden), wall_s=round(time.perf_counter() - t0, 1))
        row["images_per_s"] = row["correct"] / row["sim_s"]
        rows.append(row)
        print(f"{rate:>14g} {row['sent']:>5} {row['correct']:>7} {row['retried']:>7} "
              f"{row['failed']:>6} {row['wrong']:>5} {row['images_per_s']:>9.1f} {row['wall_s']:>6.0f}",
              flush=True)
    os.makedirs(OUT, exist_ok=True)
    write_json(os.path.join(OUT, "link_faults.json"),
               dict(benchmark="link_faults", baud=args.baud, frame_timeout_ms=args.frame_timeout_ms,
                    retries=args.retries, usb=args.usb, images=args.images, rates=rows))
    return rows


if __name__ == "__main__":
    main()
