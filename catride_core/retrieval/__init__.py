"""Evaluation: exact nearest neighbours (``knn``), benign ranking metrics (``metrics``), collapse
diagnostics and M_lambda (``collapse``), ERS and ARS (``robustness``), and what the ``evaluate``
stage and the training log report (``evaluation``).

Importing the package imports none of its modules, so a stage that only
computes ERS does not depend on the ranking code.
"""
