"""Load on the simulated board: many frames through the client's own code (retries, one frame
ahead) and the framed accelerator in Verilator, in USB packets with gaps, bits flipped both ways
and bytes dropped, every answer checked against the golden model.

    python -m bench.link_soak [--frames 10000] [--flip 1e-5] [--drop 1e-6] [--frame-timeout-ms 0.2]

The model, the core and the line: sim/link_session.py's `soak` (a random WRN-8-1 on 1x8x8, a
16 x 2 core at 100 MHz, 12 Mbaud, high-speed USB packets with gaps). Prints and writes
(bench/results/link_soak.json): frames, sent, answered correctly, retried, failed after the
retries, wrong answers accepted, simulated seconds and the wall time.
"""
import argparse
import os
import time

from common.files import write_json
from sim.link_session import soak, tally

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "results")
BUILD = os.path.join(ROOT, "build", "link_soak")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.link_soak", description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=10_000)
    p.add_argument("--flip", type=float, default=1e-5, help="bit flips per bit, both ways")
    p.add_argument("--drop", type=float, default=1e-6, help="bytes the host sends, dropped")
    p.add_argument("--retries", type=int, default=3)
    p.add_argument("--frame-timeout-ms", type=float, default=0.2)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    result, golden = soak(args.frames, BUILD, flip=args.flip, drop=args.drop, retries=args.retries,
                          frame_timeout_ms=args.frame_timeout_ms)
    row = dict(tally(result, golden), wall_s=round(time.perf_counter() - t0, 1))
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
