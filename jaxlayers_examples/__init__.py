"""Code the example scripts in ``examples/`` share, installed with the repository.

``pip install -e '.[examples]'`` makes it importable (its third-party needs --
PyYAML, matplotlib, tqdm, scikit-learn, orbax-checkpoint -- are the ``examples``
extra); the scripts import it instead of editing ``sys.path``.

* :mod:`.config` -- typed YAML configs (dataclasses, ``key=value`` overrides).
* :mod:`.checkpoint` -- training checkpoints through Orbax (sharded, async, keep-last-N).
* :mod:`.data` -- scikit-learn's digits, split and standardised.
* :mod:`.metrics` -- ``metrics.jsonl`` files.
* :mod:`.plots` -- training-curve figures.
"""
