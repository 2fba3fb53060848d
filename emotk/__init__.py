"""emotk: speech emotion recognition in the Kaldi tradition.

Nothing heavy is imported here: ``emotk --help`` must stay fast.
"""

__version__ = "0.1.0"
