"""Jobs for the accelerator bench: the input beats of a schedule and the output beats the
golden model says must come back (sim/protocol.py has the encodings)."""
from dataclasses import dataclass

import numpy as np

from hw.compiler.schedule import DUMP, HEAD, INPUT, LOAD
from sim.protocol import encode_pixels, encode_tensor


@dataclass
class Job:
    image: list         # beats of the `image` stream (INPUT steps)
    words: list         # beats of the `words` stream (LOAD steps)
    expected: list
    in_stall: float = 0.0
    out_stall: float = 0.0
    seed: int = 0
    timeout_cycles: int = 10_000_000

    def save(self, path):
        np.savez(path, image=np.array(self.image, np.int64),
                 words=np.array([str(v) for v in self.words], dtype=str),
                 expected=np.array([str(v) for v in self.expected]), in_stall=self.in_stall,
                 out_stall=self.out_stall, seed=self.seed, timeout_cycles=self.timeout_cycles)


def result_beats(logits, cls, out_bits):
    mask = (1 << out_bits) - 1
    return [int(v) & mask for v in logits] + [int(cls) | (1 << out_bits)]


def schedule_job(plan, images, golden):
    """The beats for the table of `plan` (whole network or layer tests) on `images`.

    golden: GoldenResult of the same images with keep=True (tensors by name, N first).
    """
    sched, qm = plan.schedule, plan.qmodel
    lanes, a, ob = sched.lanes, qm.storage_bits, plan.out_bits
    job = Job([], [], [])
    for n, image in enumerate(images):
        for step in sched.steps:
            name = step.writes[0] if step.writes else step.name
            if step.kind == INPUT:
                job.image += encode_pixels(image)
            elif step.kind == LOAD:
                job.words += encode_tensor(sched.stored_tensor(name, golden.tensors[name][n]),
                                           lanes, a)
            elif step.kind == DUMP:
                src = step.reads[0]
                words = encode_tensor(sched.stored_tensor(src, golden.tensors[src][n]), lanes, a)
                beats = words[:-1] + [words[-1] | (1 << ob)]
                job.expected += beats
            elif step.kind == HEAD:
                beats = result_beats(golden.logits[n], golden.classes[n], ob)
                job.expected += beats
    return job
