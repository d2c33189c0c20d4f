"""mnist-rosetta: the harness and the contract around the four implementations.

The contract (the only modules ``reference_numpy``, ``torch_impl``, ``tf_impl`` and
``chainer_impl`` may import): :mod:`rosetta.configs` (the model table and hyper-parameters),
:mod:`rosetta.weights` (the weight format), :mod:`rosetta.data` (MNIST) and
:mod:`rosetta.tolerances`. Everything else is the harness: :mod:`rosetta.registry` (the framework
table), the adapters, parity, training, the CLI and its commands, convert, bench, plots and the page.
``parity_tests/test_layout.py`` enforces the rule and the absence of import cycles.
"""

CONTRACT = ("rosetta.configs", "rosetta.weights", "rosetta.data", "rosetta.tolerances")
