"""Names of the discardable attributes that one stage writes and a later stage or a runtime reads (the calling
convention of bufferized functions). They live here, below the passes and the runtimes, so both can name them."""

RESULT_ATTR = "pg.result"
"""Argument attribute of a bufferized function marking the output buffer of result k: ``{pg.result = k : i64}``."""

PEAK_ATTR = "pg.peak_bytes"
"""Function attribute set by ``pg-bufferize``: the bytes of its arena of intermediates (``i64``)."""
