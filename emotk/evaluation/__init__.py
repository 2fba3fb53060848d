"""Scoring predictions against a data dir (``emotk score``), the speaker bootstrap, and
the results tables of ``emotk report``."""
