"""The numeric core: cross-product blocks, the profiled objective, PLS solutions."""
