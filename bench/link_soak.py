"""Load on the simulated board: many frames through the client's own code (retries, one frame
ahead) and the framed accelerator in Verilator, in USB packets with gaps, bits flipped both ways
and bytes dropped, every answer checked against the golden model.

    python -m bench.link_soak [--frames 10000] [--flip 1e-5] [--drop 1e-6] [--frame-timeout-ms 0.2]

A random WRN-8-1 on 1x8x8 images (71-byte frames, 51-byte replies) on a 16 x 2 core at
100 MHz, 12 Mbaud; the host's bytes in high-speed USB packets (512 bytes, a gap of up to one
125 us microframe before each; sim/usb_host.py, without the busy host's 1-3 ms pauses, which
`tests/test_hw_build.py` covers, so that the simulated time stays the line's). Prints and writes
(bench/results/link_soak.json): frames, sent, answered correctly, retried, failed after the
retries, wrong answers accepted, simulated seconds and the wall time.
"""
import argparse
import os
import time

from common.files import write_json
from hw.link.protocol import frame_bytes
from quantize.golden import run
from quantize.random_model import random_images, random_qmodel
from sim.link_session import noisy_session, tally
from sim.usb_host import usb_packets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "results")
BUILD = os.path.join(ROOT, "build", "link_soak")
CLOCK_HZ, BAUD = 100_000_000, 12_000_000


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.link_soak", description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=10_000)
    p.add_argument("--flip", type=float, default=1e-5, help="bit flips per bit, both ways")
    p.add_argument("--drop", type=float, default=1e-6, help="bytes the host sends, dropped")
    p.add_argument("--retries", type=int, default=3)
    p.add_argument("--frame-timeout-ms", type=float, default=0.2)
    args = p.parse_args(argv)
    qm = random_qmodel(depth=8, width=1, input_size=8, act_bits=8, seed=5)
    images = random_images(args.frames, qm.input_shape, seed=24)
    frame_in = frame_bytes(qm.input_shape, qm.num_classes)["in"]
    packets = usb_packets(frame_in * args.frames * 2, "high", seed=6, busy_share=0)
    t0 = time.perf_counter()
    result = noisy_session(qm, images, BUILD, clock_hz=CLOCK_HZ, baud=BAUD,
                           frame_timeout_ms=args.frame_timeout_ms, retries=args.retries, seed=7,
                           rx_flip=args.flip, tx_flip=args.flip, rx_drop=args.drop,
                           packets=packets, reply_timeout_s=0.01, lanes=16, pixels_per_cycle=2)
    row = dict(tally(result, run(qm, images)), wall_s=round(time.perf_counter() - t0, 1))
    print(f"{row['images']:,} frames: {row['sent']:,} sent, {row['correct']:,} correct, "
          f"{row['retried']:,} retried, {row['failed']:,} failed, {row['wrong']} wrong; "
          f"{row['sim_s']:.3f} s simulated, {row['wall_s']:,.0f} s wall", flush=True)
    os.makedirs(OUT, exist_ok=True)
    write_json(os.path.join(OUT, "link_soak.json"),
               dict(benchmark="link_soak", flip=args.flip, drop=args.drop, retries=args.retries,
                    frame_timeout_ms=args.frame_timeout_ms, **row))
    return row


if __name__ == "__main__":
    main()
