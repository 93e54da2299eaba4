"""Block matrix kernels of the engine (numpy/scipy only; no pandas, no formulas)."""
