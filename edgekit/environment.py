"""The facts a latency figure depends on: CPU, cores, the ISA features int8 kernels use, runtime versions.

Defined in board/timing.py, which `edgekit bench --remote` runs on a board without edgekit, so a local and a
remote bench describe their machine with the same code.
"""

from .board.timing import ISA_FLAGS, RUNTIMES, cpu_info, environment

__all__ = ["ISA_FLAGS", "RUNTIMES", "cpu_info", "environment"]
