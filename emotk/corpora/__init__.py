"""One module per corpus: ``prepare_<corpus>(corpus_dir, data_dir)`` reads the real layout into
data dirs, ``make_synthetic(out_dir, seed=..., size=..., duration=...)`` writes a look-alike in
exactly that layout so the same prepare code reads it."""

from __future__ import annotations

import importlib

from emotk.errors import EmotkError

# corpus name -> module with make_synthetic()
SYNTHETIC = {
    "emodb": "emotk.corpora.emodb",
    "enterface": "emotk.corpora.enterface",
    "iemocap": "emotk.corpora.iemocap",
    "musan": "emotk.corpora.musan",
    "recola": "emotk.corpora.recola",
}


def synthetic_maker(corpus: str):
    if corpus not in SYNTHETIC:
        raise EmotkError(f"no synthetic corpus {corpus!r}; available: {', '.join(sorted(SYNTHETIC))}")
    return importlib.import_module(SYNTHETIC[corpus]).make_synthetic
