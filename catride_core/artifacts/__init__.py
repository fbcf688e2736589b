"""All file I/O of the pipeline's own artifacts, one module per kind.

- ``files``: atomic writers and readers of JSON, CSV, text, PNG figures and tensors;
- ``prepared``: the prepared dataset (``prepare`` writes it, every later stage reads it);
- ``checkpoints``: model checkpoints with their resolved params and training state.

Importing the package imports none of them, so a stage that only reads JSON
does not depend on the model or data code.
"""
