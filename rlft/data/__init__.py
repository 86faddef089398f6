"""The data stage: rows in, the datasets each trainer needs out.

- `loading`: read files, rename columns, split, and shape rows for each TRL trainer (`prepare`).
- `splits`: near-duplicate-free held-out splits; `noise`: colloquial noise for customer messages.
- `oracle`: does a prompt show the model something derived from the gold label?
- `demo`: the small built-in dataset.
- `labeling` (`rlft label`) and `synthetic` (`rlft generate`): make data with a model.

`rlft.data.prepare` and the other names of the former `rlft/data.py` are read from `loading`.
"""


from rlft._moved import reexport

__getattr__ = reexport(__name__, "loading")
