"""Images/s through the board's UART, simulated: the framed accelerator (UART, framing, core) in
Verilator, the host's UART driven bit by bit in real time, the host one frame ahead.

    python -m bench.link_speed [--model RUN_DIR/quant] [--images 4] [--bauds 12000000,3000000]
                               [--lanes 16] [--pixels 2] [--clock-mhz 100] [--hosts burst,usb]

The model: --model, else runs/default/quant when it exists, else a random WRN-20-1 on 1x28x28
(the `make train` architecture; a note says so). For each baud rate (default the Arty's
12 Mbaud and the ULX3S's 3 Mbaud) it sends --images random images, frame n + 1 before reply n
is read (sim/benches/framed.py), and prints the images/s measured between the first and the
last reply, the cycle counts in the replies against hw.core.latency's cycles per image, whether
every answer is bit-exact with the golden model, the UART's rate error, and what the report
predicts (hw.flow.report: link_images_per_s, end_to_end_images_per_s). Each rate runs under
each of --hosts: `burst`, every frame back to back on the line, and `usb`, the frames in USB
packets with gaps as a USB-UART delivers them (sim/usb_host.py: high speed, the FT2232H's, above
3 Mbaud; full speed, the FT231X's, at or below). Writes bench/results/link_speed.json. The
Verilator builds are kept in build/link_speed/BAUD.
"""
import argparse
import io
import json
import os
import time

from common.files import write_json
from hw.link.protocol import encode_frame, frame_bytes, link_images_per_s, read_reply
from hw.link.framing import FramedAccelerator
from hw.core.latency import latency_report
from hw.core.plan import CoreOptions
from hw.flow.report import end_to_end_images_per_s
from hw.link.uart import bit_timing
from quantize.golden import run
from quantize.qmodel import read_qmodel
from quantize.random_model import random_images, random_qmodel
from sim.runner import CocotbFailure, run_cocotb
from sim.usb_host import usb_packets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "results")
DEFAULT_MODEL = os.path.join(ROOT, "runs", "default", "quant")
BUILD = os.path.join(ROOT, "build", "link_speed")


def load_model(path):
    """(qmodel, its name): --model, the default model, or a random one with a note."""
    if path or os.path.exists(DEFAULT_MODEL):
        return read_qmodel(path or DEFAULT_MODEL), path or "runs/default/quant"
    print(f"note: no model at {DEFAULT_MODEL} (make train && make quantize); using a random "
          "WRN-20-1 on 1x28x28 with 10 classes, the same architecture and so the same cycles")
    return random_qmodel(depth=20, width=1, in_channels=1, num_classes=10, input_size=28,
                         seed=0), "random WRN-20-1 1x28x28"


def usb_speed(baud):
    """The USB speed of the bridge that carries `baud`: the FT2232H (high) above 3 Mbaud."""
    return "high" if baud > 3_000_000 else "full"


def simulate(plan, images, timing, clock_hz, folder, host="burst"):
    """Send `images` one frame ahead through the framed accelerator at `timing`'s rate, from a
    `host` ("burst" or "usb"); returns (the replies, the simulation times in ps at which they
    ended, wall seconds)."""
    frames_bytes = frame_bytes(plan.qmodel.input_shape, plan.num_classes)
    out_bytes = frames_bytes["out"]
    os.makedirs(folder, exist_ok=True)
    exchange = dict(name="one frame ahead", frames=[list(encode_frame(x)) for x in images], ahead=1,
                    expect=[[0] * out_bytes for _ in images])     # lengths only: check is off
    if host == "usb":
        exchange["packets"] = usb_packets(frames_bytes["in"] * len(images), usb_speed(timing.baud))
    frames = dict(clock_ps=10 ** 12 // clock_hz, baud=timing.baud, check=False,
                  reply_timeout_cycles=20 * latency_report(plan.schedule).cycles_per_image
                  + (clock_hz // 10 if host == "usb" else 0),     # + 100 ms of USB gaps
                  exchanges=[exchange])
    plan_path, result_path = os.path.join(folder, "frames.json"), os.path.join(folder, "result.json")
    with open(plan_path, "w") as f:
        json.dump(frames, f)
    if os.path.exists(result_path):
        os.remove(result_path)
    t0 = time.perf_counter()
    run_cocotb(FramedAccelerator(plan, timing), "framed", "sim.benches.framed", folder,
               params={"frames": plan_path, "result": result_path},
               log_file=os.path.join(folder, "sim.log"))
    seconds = time.perf_counter() - t0
    with open(result_path) as f:
        result = json.load(f)[0]
    data = bytes(result["bytes"])
    replies = [read_reply(io.BytesIO(data[i:i + out_bytes]).read)
               for i in range(0, len(data), out_bytes)]
    return replies, result["reply_end_ps"], seconds


def measure(plan, images, golden, baud, clock_mhz, host):
    clock_hz = round(clock_mhz * 1e6)
    timing = bit_timing(clock_hz, baud)
    replies, ends, seconds = simulate(plan, images, timing, clock_hz,
                                      os.path.join(BUILD, str(baud)), host)
    latency = latency_report(plan.schedule, clock_mhz)
    frames = frame_bytes(plan.qmodel.input_shape, plan.num_classes)
    link = link_images_per_s(frames, baud)
    span_s = (ends[-1] - ends[0]) * 1e-12
    return dict(baud=baud, host=host, usb_speed=usb_speed(baud) if host == "usb" else None,
                cycles_per_bit=str(timing.cycles),
                rate_error_ppm=timing.rate_error_ppm, jitter_cycles=timing.jitter_cycles,
                images=len(images), wall_seconds=round(seconds, 1),
                reply_end_us=[t * 1e-6 for t in ends],
                measured_images_per_s=(len(ends) - 1) / span_s if len(ends) > 1 else None,
                reply_cycles=[r.cycles for r in replies],
                model_cycles_per_image=latency.cycles_per_image,
                bit_exact=all(r.logits == [int(v) for v in golden.logits[n]] and
                              r.cls == int(golden.classes[n]) for n, r in enumerate(replies)),
                predicted_link_images_per_s=link,
                predicted_end_to_end_images_per_s=end_to_end_images_per_s(link, latency.images_per_s))


def report(r):
    measured = r["measured_images_per_s"]
    host = f"a USB host ({r['usb_speed']} speed)" if r["host"] == "usb" else "frames back to back"
    print(f"{r['baud']:,} baud, {host}: {r['cycles_per_bit']} cycles per bit, rate error "
          f"{r['rate_error_ppm']:g} ppm, edges up to {r['jitter_cycles']:.2f} cycle early")
    print(f"  measured {measured:,.1f} images/s end to end (first to last of {r['images']} replies)"
          if measured else "  one reply: no rate measured (give --images 2 or more)")
    print(f"  predicted: link {r['predicted_link_images_per_s']:,.1f} images/s, end to end "
          f"{r['predicted_end_to_end_images_per_s']:,.1f} images/s")
    same = all(c == r["model_cycles_per_image"] for c in r["reply_cycles"])
    print(f"  cycles in the replies {', '.join(f'{c:,}' for c in r['reply_cycles'])}; hw.core.latency "
          f"{r['model_cycles_per_image']:,} ({'equal' if same else 'DIFFERENT'}); answers "
          f"{'bit-exact' if r['bit_exact'] else 'NOT bit-exact'} with the golden model; "
          f"simulated in {r['wall_seconds']:.0f} s")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.link_speed", description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--bauds", default="12000000,3000000", help="baud rates, comma-separated")
    p.add_argument("--lanes", type=int, default=16)
    p.add_argument("--pixels", type=int, default=2)
    p.add_argument("--clock-mhz", type=float, default=100.0)
    p.add_argument("--hosts", default="burst,usb", help="burst, usb or both, comma-separated")
    args = p.parse_args(argv)
    hosts = args.hosts.split(",")
    if not set(hosts) <= {"burst", "usb"}:
        p.error(f"--hosts takes burst and usb, got {args.hosts}")
    if args.images < 1:
        p.error(f"--images must be at least 1, got {args.images}")
    qmodel, name = load_model(args.model)
    plan = CoreOptions(args.lanes, args.pixels).plan(qmodel)
    images = random_images(args.images, qmodel.input_shape, seed=1)
    golden = run(qmodel, images)
    print(f"{name}, {args.lanes} lanes x {args.pixels} pixels at {args.clock_mhz:g} MHz, "
          f"{args.images} images, the host one frame ahead", flush=True)
    rows = []
    for baud in (int(b) for b in args.bauds.split(",")):
        for host in hosts:
            try:
                rows.append(measure(plan, images, golden, baud, args.clock_mhz, host))
            except CocotbFailure as e:
                p.exit(1, f"python -m bench.link_speed: {baud} baud, {host} host: {e}\n")
            report(rows[-1])
    os.makedirs(OUT, exist_ok=True)
    write_json(os.path.join(OUT, "link_speed.json"),
               dict(benchmark="link_speed", model=name, lanes=args.lanes, pixels=args.pixels,
                    clock_mhz=args.clock_mhz, rates=rows))
    return rows


if __name__ == "__main__":
    main()
