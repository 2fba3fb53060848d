"""Shared fixtures: tiny synthetic corpora in the real layouts, built once per test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_emodb_corpus(tmp_path_factory):
    """A synthetic EmoDB (real layout, ``wav/03a01Fa.wav``): 56 utterances, 4 speakers, all 7 emotions.

    Session-scoped and shared: copy it before changing anything in it.
    """
    from emotk.corpora.emodb import make_synthetic

    return make_synthetic(tmp_path_factory.mktemp("corpora") / "emodb", seed=0, size=56)
