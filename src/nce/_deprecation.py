"""Keywords renamed for one word per idea keep working for one release, with a
:class:`DeprecationWarning` that names the new keyword."""

from __future__ import annotations

import functools
import warnings

__all__ = ["renamed_keywords"]


def renamed_keywords(**renames: str):
    """Decorator: ``@renamed_keywords(learning_rate="lr")`` lets callers still pass
    ``learning_rate=`` (with a DeprecationWarning naming ``lr``) to a function whose keyword is now
    ``lr``. Passing both names raises a TypeError.

    Example:
        >>> @renamed_keywords(learning_rate="lr")
        ... def fit(*, lr=0.1):
        ...     return lr
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     fit(learning_rate=0.5), caught[0].category.__name__
        (0.5, 'DeprecationWarning')
    """

    def decorate(function):
        where = function.__qualname__.replace(".__init__", "")

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(
                            f"{where} got both {new}= and its old name {old}=; pass only {new}="
                        )
                    warnings.warn(
                        f"{where}: {old}= is deprecated and will be removed in the next "
                        f"release; use {new}=",
                        DeprecationWarning,
                        stacklevel=2,
                    )
                    kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return wrapper

    return decorate
