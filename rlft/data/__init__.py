"""The data stage: rows in, the datasets each trainer needs out.

- `loading`: `prepare`, the data stage of a run, from the four modules below.
- `reading`: read a source into a dataset (and name the bad line of a file that fails); `checks`: what `rlft validate`
  checks of the data; `holdout`: the held-out and selection splits; `shapes`: rows in each TRL trainer's format.
- `splits`: near-duplicate-free split algorithms; `noise`: colloquial noise for customer messages.
- `oracle`: does a prompt show the model something derived from the gold label?
- `demo`: the small built-in dataset.
- `labeling` (`rlft label`) and `synthetic` (`rlft generate`): make data with a model.

`rlft.data.prepare` and the other names of the former `rlft/data.py` are read from these five modules.
"""


from rlft._moved import reexport

__getattr__ = reexport(__name__, "loading", "reading", "checks", "holdout", "shapes")
