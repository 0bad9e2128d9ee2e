"""Layer-test tables: every step checked alone through the production controller.

A step's stored inputs are LOADed from the `words` stream, the step runs, and what it wrote is
DUMPed to the `out` stream (the head streams its logits itself), so the simulation compares each
layer with the golden model's tensor of the same name.
"""
from dataclasses import replace

from hw.compiler.schedule import DUMP, LOAD, Schedule, Step


def layer_schedule(schedule, index):
    """The table that checks step `index` alone: its steps are segment `index`, so that each
    segment of a combined table has buffers of its own."""
    step = replace(schedule.steps[index], reads=list(schedule.steps[index].reads),
                   writes=list(schedule.steps[index].writes), segment=index)
    shape = schedule.stored_shape
    loads = [Step(LOAD, name, out_shape=shape(name), writes=[name], segment=index)
             for name in step.reads]
    dumps = [Step(DUMP, name, src_shape=shape(name), reads=[name], segment=index)
             for name in step.writes]
    return loads + [step] + dumps


def layer_test_schedule(schedule, indices=None):
    """Every step (or those in `indices`) checked alone, one after the other, in one table."""
    indices = range(len(schedule.steps)) if indices is None else indices
    steps = [s for i in indices for s in layer_schedule(schedule, i)]
    return Schedule(schedule.qmodel, schedule.lanes, steps, schedule.layout, schedule.pixels_per_cycle)
