"""catride: adversarially robust deep-metric-learning retrieval (CA-TRIDE and baselines).

Importing the package has no side effects; the pipeline stages live in
``catride_core.cli`` and the maths in the subpackages.
"""

__version__ = "0.1.0"
