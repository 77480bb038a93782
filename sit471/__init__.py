"""SIT471 course library: data, checks and helpers that the notebooks import.

The reference answers live in ``sit471.reference``, which only the staff install has.
"""

__version__ = "0.1.0"
