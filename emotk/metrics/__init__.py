"""Metrics in numpy: classification (UA, WA, F1, confusion) and regression (CCC, RMSE, PCC)."""
