"""Benchmark harness: device profiles, timing records, native tools (trtexec, benchmark_model), remote
devices (ssh, adb), the papers' tables and the report that puts measured next to published."""
