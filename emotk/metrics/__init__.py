"""Metrics in numpy: classification (UA, WA, F1, confusion, baselines) and regression (CCC, RMSE, PCC)."""
