"""How a USB-UART hands the host's bytes to the line: in USB packets, with gaps between them.

A USB bulk transfer reaches the bridge in packets (64 bytes at full speed, the FT231X of the
ULX3S; 512 at high speed, the FT2232H of the Arty) scheduled in frames (1 ms at full speed) or
microframes (125 us at high speed). The model (`usb_packets`): the bytes go out in packets of
`packet_bytes`, back to back inside a packet; before each packet the line is idle for a uniform
fraction of a (micro)frame, and one packet in eight waits 1 to 3 ms more, for a host whose OS is
busy. `long_pause_ms` sets the gap before the middle packet, for a frame with a long pause inside.
The result is the framed bench's `packets` option (sim/benches/framed.py).
"""
import random

USB_SPEEDS = {                # bytes per packet, (micro)frame in ms
    "full": (64, 1.0),        # FT231X (ULX3S)
    "high": (512, 0.125),     # FT2232H (Arty A7)
}
BUSY_SHARE = 1 / 8            # packets that wait for a busy host
BUSY_MS = (1.0, 3.0)          # how long more they wait


def usb_packets(total_bytes, speed="full", seed=0, long_pause_ms=None, busy_share=BUSY_SHARE):
    """The `packets` option for `total_bytes` sent at USB `speed`: packet size and the gap before
    each packet in ps. `busy_share`: the packets that wait for a busy host (0: a host that keeps
    the bus fed, for long soaks whose simulated time is mostly the line's)."""
    size, frame_ms = USB_SPEEDS[speed]
    rng = random.Random(seed)
    count = -(-total_bytes // size)
    gaps_ms = [rng.uniform(0, frame_ms) + (rng.uniform(*BUSY_MS) if rng.random() < busy_share else 0)
               for _ in range(count)]
    if long_pause_ms is not None:
        gaps_ms[count // 2] = long_pause_ms
    return dict(bytes=size, gaps_ps=[round(g * 1e9) for g in gaps_ms])
