"""cocotb-side code: imported only inside the simulator, never by the host.

Benches (cocotb test modules, run by `sim.runner.run_cocotb(..., "sim.benches.NAME", ...)`):
    accelerator   hw.core.accelerator.Accelerator: plays a job of sim.jobs through its streams
    addsub_tree   hw.blocks.addsub_tree.AddSubTree alone, a new vector every cycle
    requant       hw.blocks.requant.Requantizer alone, a new vector every cycle
    framed        hw.link.framing.FramedAccelerator through a bit-level UART
    smoke         sim.smoke_design.SmokeAccumulator: the simulator path itself

Helpers:
    params        bench_params(): the parameters the host gave run_cocotb(..., params=...)
    pipeline      check_pipeline(): a new vector every cycle, every output checked (block benches)
    reset         start(): the clock, inputs at zero, reset
    streams       valid/ready stream driver and monitor with random stalls

The host side (building designs, writing jobs, comparing with the golden model) is the rest of
`sim/`; the reference models the benches compare against (`sim.models`, `sim.smoke_model`) are
shared with the host-side tests and stay there.
"""
