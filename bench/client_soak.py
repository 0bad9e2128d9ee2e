"""The host client under load: frames through a real pseudo-terminal to the fake board
(sim/fake_board.py) with faults both ways, every answer checked, the client's memory measured.

    python -m bench.client_soak [--frames 100000] [--flip 1e-4] [--drop 1e-5] [--retries 3]

Images of 1x8x8 (71-byte frames), the fake board's frame timeout 1 ms. Prints and writes
(bench/results/client_soak.json): frames, frames sent (tries), answered correctly, failed after
the retries, wrong answers accepted, the peak of the memory Python allocated while the client ran
(tracemalloc), and the time, with the same figures for the first tenth of the frames, so that a
memory that grows with the frames shows as a ratio.
"""
import argparse
import os

from common.files import write_json
from sim.client_soak import soak

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "results")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.client_soak", description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=100_000)
    p.add_argument("--flip", type=float, default=1e-4, help="bit flips per bit, both ways")
    p.add_argument("--drop", type=float, default=1e-5, help="bytes the host sends, dropped")
    p.add_argument("--retries", type=int, default=3)
    args = p.parse_args(argv)
    runs = {}
    for name, frames in (("tenth", max(1, args.frames // 10)), ("all", args.frames)):
        runs[name] = soak(frames, rx_flip=args.flip, tx_flip=args.flip, rx_drop=args.drop,
                          retries=args.retries, seed=1)
        r = runs[name]
        print(f"{r['frames']:,} frames: {r['sent']:,} sent, {r['correct']:,} correct, {r['failed']:,} "
              f"failed, {r['wrong']} wrong; peak memory {r['peak_bytes'] / 1024:,.1f} KiB; "
              f"{r['seconds']:,.1f} s", flush=True)
    print(f"peak memory all / tenth: {runs['all']['peak_bytes'] / runs['tenth']['peak_bytes']:.2f}")
    os.makedirs(OUT, exist_ok=True)
    write_json(os.path.join(OUT, "client_soak.json"),
               dict(benchmark="client_soak", flip=args.flip, drop=args.drop, retries=args.retries,
                    runs=runs))
    return runs


if __name__ == "__main__":
    main()
