# Put first on PYTHONPATH by tests/test_bench_run.py: pycuda reads as missing even where it is installed.
raise ModuleNotFoundError("No module named 'pycuda' (hidden by the test)", name="pycuda")
