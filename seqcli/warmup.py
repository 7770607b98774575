"""`python -m seqcli.warmup`: compile and cache every kernel now rather than on first use
(after removing cached kernels that a change to the kernel sources left stale)."""

import sys
import time

from seqcli.runtime.compiled import clear_stale_kernels, record_kernel_sources, warm_up

start = time.perf_counter()
if clear_stale_kernels():
    print("seqcli: cached kernels removed: the kernel sources changed since they were built",
          file=sys.stderr)
warm_up()
record_kernel_sources()
print(f"seqcli: kernels compiled and cached in {time.perf_counter() - start:.1f} s",
      file=sys.stderr)
