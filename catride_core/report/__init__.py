"""What turns saved results into the report: tables, figures and documents (no attack runs, no file I/O).

- ``content``: the robustness and trade-off tables, paired comparisons of
  adjacent models, the settings, and the report's blocks;
- ``document``: the blocks as markdown and as one self-contained HTML page;
- ``figures``: the score, attack, trade-off and training-curve figures;
- ``curves``: the eps sweep's long table and its figure;
- ``examples``: the retrieval-example grids;
- ``seeds``: the several-seeds table from ``dvc exp show``;
- ``palette``: one colour per model, for every figure.

The runs behind the curves and the examples are ``attacks.sweep`` and
``attacks.examples``. Importing the package imports none of its modules.
"""
