"""Datasets: sources (``sources.py``, one per ``prepare.dataset`` name), splits, the SPC-2 sampler,
and the prepared data every stage after ``prepare`` reads (``prepared.py``).

Importing the package imports none of its modules, so a stage that reads
prepared data does not depend on the dataset readers.
"""
