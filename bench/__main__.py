"""`make bench`: every benchmark, each printing its figures and ratios (JSON in bench/results/)."""
from bench import (client_soak, golden_speed, hw_latency, lane_cost, link_faults, link_soak,
                   link_speed, requantizers, routed_build, sim_speed, throughput_sweep, train_step)

BENCHMARKS = [train_step, golden_speed, hw_latency, requantizers, lane_cost, throughput_sweep,
              sim_speed, link_speed, link_faults, link_soak, client_soak, routed_build]

for bench in BENCHMARKS:
    print(f"== {bench.__name__}", flush=True)
    bench.main([])
