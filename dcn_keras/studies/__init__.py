"""Research tooling behind the numbers in docs/: benchmarks, the paper's comparison, sweeps.

Not part of the library a user imports (`dcn_keras` itself); `bin/dcn_bench`,
`bin/dcn_compare` and `bin/dcn_sweep` run it. It builds on the models,
training and evaluation, and nothing in the library imports it.
"""
