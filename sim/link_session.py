"""The host client's own code against the framed accelerator in Verilator, over a faulty line:
the host side of sim/benches/framed.py's `session` (tests/test_hw_build.py, bench.link_faults).
"""
import json
import os

from hw.core.plan import CoreOptions
from hw.link.framing import FramedAccelerator
from hw.link.protocol import frame_bytes
from hw.link.uart import bit_timing
from quantize.golden import run
from quantize.random_model import random_images, random_qmodel
from sim.runner import run_cocotb
from sim.usb_host import usb_packets

SOAK_CLOCK_HZ, SOAK_BAUD = 100_000_000, 12_000_000


def noisy_session(qmodel, images, folder, *, clock_hz, baud, frame_timeout_ms, retries, seed,
                  rx_flip=0.0, tx_flip=0.0, rx_drop=0.0, packets=None, reply_timeout_s=0.01,
                  lanes=8, pixels_per_cycle=1):
    """Stream `images` with hw.host.client.classify_stream; returns the bench's result: per
    image its reply or error, how many times each frame went out, the simulated time. The
    client waits twice the frame timeout and 0.1 ms before a retry, as its `quiet_s` does."""
    timing = bit_timing(clock_hz, baud)
    dut = FramedAccelerator(CoreOptions(lanes, pixels_per_cycle).plan(qmodel), timing, frame_timeout_ms)
    session = dict(images=[x.tolist() for x in images], retries=retries, seed=seed,
                   quiet_ps=round((2 * frame_timeout_ms + 0.1) * 1e9),
                   reply_timeout_ps=round(reply_timeout_s * 1e12),
                   rx_flip=rx_flip, tx_flip=tx_flip, rx_drop=rx_drop, packets=packets)
    plan = dict(clock_ps=10 ** 12 // clock_hz, baud=baud, session=session)
    os.makedirs(folder, exist_ok=True)
    plan_path, result_path = os.path.join(folder, "frames.json"), os.path.join(folder, "result.json")
    with open(plan_path, "w") as f:
        json.dump(plan, f)
    run_cocotb(dut, "framed", "sim.benches.framed", os.path.join(folder, "build"), test_dir=folder,
               params={"frames": plan_path, "result": result_path},
               log_file=os.path.join(folder, "sim.log"))
    with open(result_path) as f:
        return json.load(f)


def tally(result, golden):
    """What the session's images came to against the golden model: frames sent, answered
    correctly, retried (sent more than once), failed (an error after the retries), wrong
    answers accepted."""
    correct = wrong = failed = 0
    for i, r in enumerate(result["images"]):
        if "logits" not in r:
            failed += 1
        elif r["logits"] == [int(v) for v in golden.logits[i]] and r["cls"] == int(golden.classes[i]):
            correct += 1
        else:
            wrong += 1
    return dict(images=len(result["images"]), sent=sum(result["sends"]), correct=correct,
                retried=sum(n > 1 for n in result["sends"]), failed=failed, wrong=wrong,
                sim_s=result["sim_ps"] * 1e-12)


def soak(frames, folder, *, flip=1e-5, drop=1e-6, retries=3, frame_timeout_ms=0.2):
    """Load on the simulated board: `frames` random 1x8x8 images of a random WRN-8-1 (71-byte
    frames, 51-byte replies) on a 16 x 2 core at 100 MHz and 12 Mbaud, through `noisy_session`
    with the host's bytes in high-speed USB packets (512 bytes, a gap of up to one 125 us
    microframe before each, without the busy host's 1-3 ms pauses, so that the simulated time
    stays the line's), bits flipped both ways at `flip`, the host's bytes dropped at `drop`.
    Returns (the session's result, the golden model's answers)."""
    qm = random_qmodel(depth=8, width=1, input_size=8, act_bits=8, seed=5)
    images = random_images(frames, qm.input_shape, seed=24)
    frame_in = frame_bytes(qm.input_shape, qm.num_classes)["in"]
    packets = usb_packets(frame_in * frames * 2, "high", seed=6, busy_share=0)
    result = noisy_session(qm, images, folder, clock_hz=SOAK_CLOCK_HZ, baud=SOAK_BAUD,
                           frame_timeout_ms=frame_timeout_ms, retries=retries, seed=7,
                           rx_flip=flip, tx_flip=flip, rx_drop=drop, packets=packets,
                           reply_timeout_s=0.01, lanes=16, pixels_per_cycle=2)
    return result, run(qm, images)
