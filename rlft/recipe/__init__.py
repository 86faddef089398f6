"""The recipe stage: YAML files and overrides in, a validated `Recipe` out, before any model loads.

- `load`: read a recipe (`extends:`, `section.key=value` overrides) and build a `Recipe` (`load_recipe`).
- `sections`: the typed dataclasses, one per recipe section (`model:`, `data:`, `decoding:`, ...).
- `typecheck`: a YAML value against a dataclass field's type hint.
- `validate`: the deep checks that need imports but no model (`rlft validate`).
- `check`: the dry run on a few real rows (`rlft check`).

`rlft.recipe.load_recipe` and the other names of the former `rlft/recipe.py` are read from `load`.
"""


from rlft._moved import reexport

__getattr__ = reexport(__name__, "load")
