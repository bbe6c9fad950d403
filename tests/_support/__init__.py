"""Helpers shared by the tests and the benchmarks: a private bus, a daemon runner, one polling helper.

Plain modules, imported as ``_support.<module>`` (``tests/`` is on ``sys.path``
in a test run; the benchmarks put it there): never through a conftest.
"""
