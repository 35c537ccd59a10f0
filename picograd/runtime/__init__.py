"""The runtimes, beside the compiler: the numpy executor of the ``pg`` stage (``numpy_executor``, device "cpu"), the
CUDA runtime (``cuda``: device memory, modules, launches, CUDA graphs; device "cuda"), and the interpreter of the loop
stage (``loop_interpreter``, tests only). Runtimes import no passes."""
