"""Facts about the PTX target, below the passes that lower to it and the runtime that loads it: accurate math
expansions (``gpu_math``), the PTX printer of the ``ptx`` dialect (``ptx_printer``) and the assembler (``ptxas``:
one invocation of ptxas or nvJitLink, one parser of its ``-v`` log and of the ``.target`` directive)."""
