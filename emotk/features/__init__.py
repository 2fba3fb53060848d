"""Features: Kaldi-compatible fbank / MFCC (``extract``), data-dir extraction jobs (``pipeline``),
CMVN / speaker z-norm (``cmvn``), frame stacking and splicing (``transforms``)."""
