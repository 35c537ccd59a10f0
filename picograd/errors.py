"""The exceptions users see. Each message names the problem and, when it comes from user code, the user's
``file:line`` (see ``picograd.frontend.graph.user_location``)."""


class ShapeError(ValueError):
    """Shapes that do not fit an op (named as Python tuples, e.g. ``(2, 3)``)."""


class DTypeError(TypeError):
    """A dtype an op cannot take (for example an int tensor that requires grad)."""


class CompileError(RuntimeError):
    """A failure while tracing or compiling a function (unknown op, a pass that rejects the IR, bad PTX)."""


class DeviceError(RuntimeError):
    """A device that is not there (no GPU, no CUDA driver) or tensors on different devices."""


class CheckpointError(ValueError):
    """A file ``pg.load`` cannot read as a picograd checkpoint (empty, truncated, not safetensors, or a safetensors
    file that another program wrote); the message names the file and what is wrong with it."""
