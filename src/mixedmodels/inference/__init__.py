"""Inference for fitted mixed models: degrees of freedom, tests, intervals, bootstrap."""
