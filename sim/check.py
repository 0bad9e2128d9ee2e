"""Hardware vs golden model, layer by layer and whole network: shared by pytest and `python -m sim`.

Every comparison is integer and covers every element; a mismatch is reported as the first
differing element (index, expected, got).
"""
from dataclasses import dataclass

import numpy as np

from hw.compiler.layer_tests import layer_test_schedule
from hw.compiler.schedule import DUMP, HEAD
from hw.core.accelerator import Accelerator
from hw.core.latency import latency_report
from hw.core.plan import CorePlan
from quantize.golden import run
from sim.harness import simulate
from sim.jobs import schedule_job
from sim.protocol import decode_result, decode_tensor


@dataclass
class Verdict:
    name: str
    ok: bool
    mismatch: tuple = None        # (index, expected, got) of the first differing element

    def line(self):
        if self.ok:
            return f"{self.name}: bit-exact"
        index, want, got = self.mismatch
        return f"{self.name}: MISMATCH at {index}: expected {want}, got {got}"


@dataclass
class NetworkCheck:
    verdicts: list                      # one per image
    cycles: list                        # measured: the first image from its first pixel, then
                                        # class to class
    model_cycles: int                   # analytic cycles per image, back to back
    model_latency: int                  # analytic cycles of an image alone

    @property
    def exact(self):
        return sum(v.ok for v in self.verdicts)


def _first_mismatch(want, got):
    diff = np.argwhere(np.asarray(want) != np.asarray(got))
    if len(diff) == 0:
        return None
    index = tuple(int(i) for i in diff[0])
    return index, int(np.asarray(want)[index]), int(np.asarray(got)[index])


def _split(beats, out_bits):
    """Output beats -> groups ending with a `last` beat, data fields only."""
    groups, current = [], []
    for b in beats:
        current.append(b & ((1 << out_bits) - 1))
        if b >> out_bits:
            groups.append(current)
            current = []
    return groups


def select_layers(schedule, names=None):
    """(indices of the steps `names` selects that the accelerator can compute, the named steps
    it cannot compute): a name selects a step by its own name or a tensor it writes; None
    selects every step and refuses none. ValueError when no step matches."""
    indices = [i for i, s in enumerate(schedule.steps)
               if names is None or s.name in names or any(w in names for w in s.writes)]
    if not indices:
        raise ValueError(f"no layer named {', '.join(names)}; layers: "
                         f"{', '.join(s.name for s in schedule.steps)}")
    refused = [schedule.steps[i] for i in indices if names is not None and schedule.steps[i].unsupported]
    return [i for i in indices if not schedule.steps[i].unsupported], refused


def check_layers(network, image, build_dir, names=None, platform=None, netlist=None):
    """Feed every step of the `network` plan (or the named ones) the golden input of its layer,
    compare its outputs; returns (verdicts, the layer-test plan). Steps the accelerator cannot
    compute (`unsupported`) are left out, or refused when named. `platform`: the core as built
    for a board; `netlist`: a board whose synthesized netlist runs instead
    (sim.harness.simulate)."""
    qmodel, lanes, schedule = network.qmodel, network.lanes, network.schedule
    indices, refused = select_layers(schedule, names)
    if refused:
        raise ValueError(f"layer {refused[0].name}: {refused[0].unsupported}")
    plan = CorePlan(layer_test_schedule(schedule, indices), network.options)
    golden = run(qmodel, image[None], keep=True)
    job = schedule_job(plan, image[None], golden)
    result = simulate(Accelerator(plan), job, build_dir, platform=platform, netlist=netlist)
    groups = _split(result.beats, plan.out_bits)
    verdicts, g = [], 0
    for step in plan.steps:
        if step.kind == DUMP:
            name = step.reads[0]
            want = plan.schedule.stored_tensor(name, golden.tensors[name][0])
            got = None
            if g < len(groups):
                got = decode_tensor(groups[g], want.shape, lanes, qmodel.storage_bits,
                                    qmodel.op(name)["out"]["signed"])
            g += 1
            verdicts.append(_verdict(name, want, got))
        elif step.kind == HEAD:
            verdicts.append(_head_verdict(step.name, golden, groups[g] if g < len(groups) else None,
                                          plan, 0))
            g += 1
    return verdicts, plan


def _verdict(name, want, got):
    if got is None:
        return Verdict(name, False, ("(missing)", "output", "nothing"))
    m = _first_mismatch(want, got)
    return Verdict(name, m is None, m)


def _head_verdict(name, golden, beats, plan, n):
    if beats is None or len(beats) != plan.num_classes + 1:
        return Verdict(name, False, ("(missing)", "logits and class", f"{beats}"))
    logits, cls = decode_result(beats, plan.num_classes, plan.out_bits)
    m = _first_mismatch(golden.logits[n], logits)
    if m is None and cls != golden.classes[n]:
        m = ("class", int(golden.classes[n]), cls)
    return Verdict(name, m is None, m)


def check_network(plan, images, build_dir, in_stall=0.0, out_stall=0.0, seed=0, platform=None,
                  netlist=None):
    """Whole network: pixels in, logits and class out for each image, vs the golden model;
    returns (NetworkCheck, plan). `platform`: the core as built for a board; `netlist`: a
    board whose synthesized netlist of the core runs instead (sim.harness.simulate)."""
    qmodel, schedule = plan.qmodel, plan.schedule
    golden = run(qmodel, images, keep=False)
    job = schedule_job(plan, images, golden)
    job.in_stall, job.out_stall, job.seed = in_stall, out_stall, seed
    result = simulate(Accelerator(plan), job, build_dir, platform=platform, netlist=netlist)
    groups = _split(result.beats, plan.out_bits)
    verdicts = [_head_verdict(f"image {n}", golden, groups[n] if n < len(groups) else None, plan, n)
                for n in range(len(images))]
    # Cycles per image: first pixel accepted -> class beat, then class beat -> next class beat.
    ends = [int(result.seen_at[i]) for i, b in enumerate(result.beats) if b >> plan.out_bits]
    starts = [int(result.accepted_at[0])] + ends[:-1] if len(result.accepted_at) else []
    cycles = [e - s for s, e in zip(starts, ends)]
    model = latency_report(schedule)
    return NetworkCheck(verdicts, cycles, model.cycles_per_image, model.latency_cycles), plan
