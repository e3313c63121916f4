# Put first on PYTHONPATH by tests/test_bench_run.py: TensorRT reads as missing even where it is installed.
raise ModuleNotFoundError("No module named 'tensorrt' (hidden by the test)", name="tensorrt")
