"""The checks of a study file's values: each returns None for a good value, else the words that follow
the key in the one-line error ("'grid.sizes' = [0] has an element 0 that must be at least 1")."""

from __future__ import annotations

import math



def number(positive=False, integer=False, lo=None, hi=None):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
            return f"must be {'an integer' if integer else 'a number'}"
        if not math.isfinite(v):  # TOML and the command line both accept inf and nan
            return "must be finite and positive" if positive else "must be finite"
        if positive and not v > 0:
            return "must be finite and positive"
        if lo is not None and v < lo:
            return f"must be at least {lo}"
        if hi is not None and v > hi:
            return f"must be at most {hi:,}"
        return None

    return check


def list_of(item_check, nonempty=True):
    def check(v):
        if not isinstance(v, list) or (nonempty and not v):
            return "must be a non-empty list"
        for x in v:
            msg = item_check(x)
            if msg:
                return f"has an element {x!r} that {msg}"
        if len(set(map(repr, v))) != len(v):
            return "has repeated values"
        return None

    return check


def one_of(*choices):
    return lambda v: None if v in choices else f"must be one of {', '.join(map(str, choices))}"


def string(v):
    return None if isinstance(v, str) else "must be a string"


def boolean(v):
    return None if isinstance(v, bool) else "must be true or false"


def base_lr(v):
    if v == "find":
        return None
    msg = number(positive=True)(v)
    return None if msg is None else 'must be "find" or a positive number'


SIZE = number(integer=True, lo=1)  # at most the data set's training images: checked once it is loaded
