"""Multi-host runs on one machine: network namespaces as hosts (hosts.py), for tests and benchmarks."""
