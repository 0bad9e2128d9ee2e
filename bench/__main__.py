"""`make bench`: every benchmark, each printing its figures and ratios (and a JSON line)."""
from bench import train_step

BENCHMARKS = [train_step]

for bench in BENCHMARKS:
    print(f"== {bench.__name__}")
    bench.main([])
