"""Where nextpnr's router2 fights: its congestion heat maps, summed by the design's parts.

    python -m bench.congestion BUILD_FOLDER [--iteration 1] [--top 20]

A build with `--router router2` (python -m hw.build, bench.routed_build) leaves router2's files
in its folder: per iteration, the overused wires by net (heat_congestion_by_net_<i>.csv) and by
tile (heat_congestion_by_coordinate_<i>.csv). This groups the nets by what they are in the
core (component and signal, indices and the names synthesis adds dropped: `engine.tree#_#.v#_#`
is every add/subtract tree's inner values), prints the groups with the most overuse and their
share, writes BUILD_FOLDER/congestion.json and congestion.png (the overuse per tile).
"""
import argparse
import collections
import csv
import os
import re

from common.files import write_json

CORE = "board.core.accel."


def net_group(name):
    """A net's part of the design: `board.core.accel.engine.tree3_12.v1_4` -> `engine.tree#_#.v#_#`."""
    name = name.replace(CORE, "")
    name = re.sub(r"_(TRELLIS|LUT4|PFUMX|CCU2C|L6MUX21|DP16KD|MULT18X18D)\w*", "", name)
    name = re.sub(r"\[\d+\]", "", name)
    return re.sub(r"\d+", "#", name)


def read_nets(path):
    with open(path) as f:
        return [(row[0], int(row[1])) for row in csv.reader(f) if len(row) == 2 and row[1].strip().isdigit()]


def read_tiles(path):
    """Overused wires per tile, as [row][column]: router2 writes a line per column (x)."""
    with open(path) as f:
        columns = [[int(v) for v in row if v.strip()] for row in csv.reader(f)]
    return [list(row) for row in zip(*columns)]


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.congestion", description=__doc__.split("\n")[0])
    p.add_argument("folder")
    p.add_argument("--iteration", type=int, default=1)
    p.add_argument("--top", type=int, default=20)
    args = p.parse_args(argv)
    nets_file = os.path.join(args.folder, f"heat_congestion_by_net_{args.iteration}.csv")
    if not os.path.exists(nets_file):
        print(f"no {nets_file}: build with --router router2 (it writes the heat maps)")
        return None
    nets = read_nets(nets_file)
    groups, parts = collections.Counter(), collections.Counter()
    for name, overuse in nets:
        groups[net_group(name)] += overuse
        inner = name.replace(CORE, "")
        parts[inner.split(".")[0] if "." in inner else "(top)"] += overuse
    total = sum(groups.values())
    print(f"router2 iteration {args.iteration}: {total:,} overused wire uses on {len(nets):,} nets")
    for group, overuse in groups.most_common(args.top):
        print(f"{overuse:8,d} {100 * overuse / total:5.1f}%  {group}")
    print("by component: " + ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in parts.most_common()))
    result = dict(iteration=args.iteration, total=total, nets=len(nets),
                  groups=groups.most_common(args.top), components=parts.most_common())
    write_json(os.path.join(args.folder, "congestion.json"), result)
    tiles_file = os.path.join(args.folder, f"heat_congestion_by_coordinate_{args.iteration}.csv")
    if os.path.exists(tiles_file):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        tiles = read_tiles(tiles_file)
        fig, ax = plt.subplots(figsize=(7, 5))
        image = ax.imshow(tiles, cmap="inferno", origin="upper")
        fig.colorbar(image, ax=ax, label="overused wires")
        ax.set(title=f"router2 congestion per tile, iteration {args.iteration}", xlabel="column", ylabel="row")
        fig.tight_layout()
        fig.savefig(os.path.join(args.folder, "congestion.png"), dpi=120)
        plt.close(fig)
    return result


if __name__ == "__main__":
    main()
