"""``raises_on_next_line``: the check of errors that name the user's ``file:line`` (shared by the error tests)."""

from __future__ import annotations

import inspect


class raises_on_next_line:
    """``with raises_on_next_line(Exc, "fragment", ...):`` followed by the offending statement on the next line:
    expects ``Exc`` whose message holds every fragment and the caller's ``file:line`` of that statement; the
    message is kept as ``.message``."""

    def __init__(self, exc: type[BaseException], *fragments: str):
        caller = inspect.currentframe().f_back  # type: ignore[union-attr]  # the frame of the `with` line
        self.exc = exc
        self.fragments = (*fragments, f"{caller.f_code.co_filename}:{caller.f_lineno + 1}")  # type: ignore[union-attr]
        self.message = ""

    def __enter__(self) -> raises_on_next_line:
        return self

    def __exit__(self, typ, value, tb) -> bool:
        assert typ is not None, f"{self.exc.__name__} was not raised"
        assert issubclass(typ, self.exc), f"expected {self.exc.__name__}, got {typ.__name__}: {value}"
        for fragment in self.fragments:
            assert fragment in str(value), f"{fragment!r} not in the message {str(value)!r}"
        self.message = str(value)
        return True
