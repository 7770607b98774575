"""`python -m seqcli.warmup`: compile and cache every kernel now rather than on first use."""

import sys
import time

from seqcli.runtime.compiled import warm_up

start = time.perf_counter()
warm_up()
print(f"seqcli: kernels compiled and cached in {time.perf_counter() - start:.1f} s",
      file=sys.stderr)
