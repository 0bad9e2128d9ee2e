"""Full-throughput check of a pipelined block: a new input vector on every cycle, the output
compared on every cycle with the reference of the vector driven `latency` cycles earlier.

Inputs are driven on the falling edge and the output is read on the next one, after the rising
edge has taken them in. Once the vectors are out, zeros drain the pipeline, so a stream leaves
the registers as reset does: holding zeros, whose result is `fill` (0).
"""
from cocotb.triggers import FallingEdge


async def check_pipeline(clock, drive, output, expected, latency, describe, *, name, label="",
                         context="", fill=0):
    """Drive len(expected) vectors back to back and check `output` on every cycle.

    drive(n): put vector n on the DUT's inputs; drive(None): zeros on all of them.
    output: the output signal, read as a signed integer; `name` names it in messages.
    expected: the reference result of each vector, in order.
    latency: cycles from an input to its output (>= 1); the first latency - 1 reads see what
        was in the pipeline before, which must be `fill`.
    describe(k): vector k's inputs, for the message.
    label, context: what is streamed and the DUT's parameters, for the message.

    Raises AssertionError with the count of wrong outputs and the first eight of them.
    """
    want = [fill] * (latency - 1) + [int(v) for v in expected]
    bad = []
    for n in range(len(want)):
        drive(n if n < len(expected) else None)
        await FallingEdge(clock)
        got = output.value.to_signed()
        if got != want[n]:
            k = n - (latency - 1)   # the vector this output belongs to
            inputs = describe(k) if k >= 0 else "pipeline fill"
            bad.append(f"cycle {n} (vector {k}): {name}={got}, expected {want[n]} ({inputs})")
    where = ", ".join(filter(None, [context, f"latency {latency}"]))
    assert not bad, (f"{label + ': ' if label else ''}{len(bad)} of {len(want)} outputs wrong "
                     f"({where}):\n  " + "\n  ".join(bad[:8]))
