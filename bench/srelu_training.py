"""Does the BN-free shifted-ReLU network train? Stabilizers compared, and the variants table.

    python -m bench.srelu_training stabilizers [--epochs 6] [--seeds 0 1 2] [--parallel 4]
    python -m bench.srelu_training variants [--epochs 14] [--seeds 0] [--srelu-seeds 0 1 2]

Each run is a real `python -m training.train` (WRN-20-1, full Fashion-MNIST, --device auto) in
its own folder under --runs. `stabilizers` trains the 1-bit srelu network with each candidate
(none: the published recipe, cosine from 0.1 with the authors' T; warm-up; gradient clipping; a
lower peak rate) for every seed and counts collapses; `variants` trains bn and srelu, 1-bit and
float, with their defaults for the same epochs. Writes NAME.json and NAME.png into --out.

A run has collapsed when its final test error is above COLLAPSED (a trained model is near 10%;
one constant class is 90%).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from common.files import figure_png, write_bytes, write_json

COLLAPSED = 0.5
NO_CLIP = ["--clip-grad-norm", "0"]
CANDIDATES = {             # "none" is the published recipe: no clipping, no warm-up
    "none": NO_CLIP,
    "warmup 100": [*NO_CLIP, "--warmup-steps", "100"],
    "warmup 480": [*NO_CLIP, "--warmup-steps", "480"],
    "clip 1": ["--clip-grad-norm", "1"],
    "peak 0.03": [*NO_CLIP, "--lr-max", "0.03"],
}
NETWORK = ["--dataset", "fashion-mnist", "--depth", "20", "--width", "1"]
NETWORK_SRELU_1BIT = ["--variant", "srelu", "--weights", "1bit"]


def run(label, flags, folder, args):
    """One training run; returns its summary with the label, or the failure."""
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    cmd = [sys.executable, "-m", "training.train", *NETWORK, "--epochs", str(args.epochs),
           "--out", folder, "--device", args.device, "--threads", str(args.threads), *flags]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    t0 = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True)
    row = dict(label=label, flags=flags, folder=folder, wall_s=round(time.time() - t0, 1))
    if done.returncode != 0:
        return dict(row, error=(done.stderr.strip().splitlines() or ["?"])[-1])
    with open(os.path.join(folder, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        history = [json.loads(line) for line in f]
    row.update(test_error=summary["test_error"], train_error=summary["train_error"],
               collapsed=summary["test_error"] > COLLAPSED,
               epoch_test_errors=[h["test_error"] for h in history])
    print(f"  {label:28s} {row['test_error']:.4f}{'  COLLAPSED' if row['collapsed'] else ''} "
          f"({row['wall_s']:.0f} s)", flush=True)
    return row


def jobs_for(args):
    if args.preset == "stabilizers":
        return [(f"{name} / seed {seed}", [*NETWORK_SRELU_1BIT, *flags, "--seed", str(seed)],
                 os.path.join(args.runs, f"stab-{name.replace(' ', '')}-s{seed}"))
                for name, flags in CANDIDATES.items() for seed in args.seeds]
    jobs = []
    for variant in ("bn", "srelu"):
        for weights in ("1bit", "float"):
            seeds = args.srelu_seeds if (variant, weights) == ("srelu", "1bit") else args.seeds
            for seed in seeds:
                jobs.append((f"{variant} {weights} / seed {seed}",
                             ["--variant", variant, "--weights", weights, "--seed", str(seed)],
                             os.path.join(args.runs, f"var-{variant}-{weights}-s{seed}")))
    return jobs


def plot(rows, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for row in rows:
        if "epoch_test_errors" in row:
            errors = row["epoch_test_errors"]
            ax.plot(range(1, len(errors) + 1), [100 * e for e in errors], "o-", ms=3, label=row["label"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error % (log)")
    ax.set_yscale("log")
    ax.axhline(100 * COLLAPSED, color="grey", lw=0.8, ls="--")
    ax.legend(fontsize=6, ncol=2)
    ax.set_title(title, fontsize=9)
    return figure_png(fig)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.srelu_training", description=__doc__.split("\n")[0])
    p.add_argument("preset", choices=("stabilizers", "variants"))
    p.add_argument("--epochs", type=int, default=None, help="default: 6 (stabilizers), 14 (variants)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="default: 0 1 2 (stabilizers), 0 (variants)")
    p.add_argument("--srelu-seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="variants: the seeds of the 1-bit srelu network")
    p.add_argument("--parallel", type=int, default=4, help="runs at a time")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2, help="CPU threads per run")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--runs", default=os.path.join("runs", "srelu-training"))
    p.add_argument("--out", default=os.path.join("bench", "results"))
    args = p.parse_args(argv)
    stabilizers = args.preset == "stabilizers"
    args.epochs = args.epochs or (6 if stabilizers else 14)
    args.seeds = args.seeds or ([0, 1, 2] if stabilizers else [0])
    jobs = jobs_for(args)
    print(f"{args.preset}: {len(jobs)} runs of {args.epochs} epochs, {args.parallel} at a time", flush=True)
    with ThreadPoolExecutor(args.parallel) as pool:
        rows = list(pool.map(lambda job: run(*job, args), jobs))
    result = dict(benchmark=f"srelu_training_{args.preset}", epochs=args.epochs, runs=rows,
                  collapsed_threshold=COLLAPSED)
    if stabilizers:
        result["collapses"] = {name: sum(r.get("collapsed", True) for r in rows
                                         if r["label"].startswith(name + " /"))
                               for name in CANDIDATES}
        print("collapses per candidate (of", len(args.seeds), "seeds):", result["collapses"])
    os.makedirs(args.out, exist_ok=True)
    write_json(os.path.join(args.out, f"srelu_{args.preset}.json"), result)
    write_bytes(os.path.join(args.out, f"srelu_{args.preset}.png"),
                plot(rows, f"WRN-20-1 Fashion-MNIST, {args.preset}, {args.epochs} epochs"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
