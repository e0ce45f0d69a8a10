"""`python -m edgekit ...`: the same as the `edgekit` executable (torchrun -m edgekit uses it)."""

from edgekit.launch import entry

entry()
