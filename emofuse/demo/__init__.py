"""The built-in demo: a synthetic Korean corpus and `emofuse demo`, the whole pipeline on it.

- `sentences`: the Korean sentences, per emotion;
- `voice`: the synthetic voice (emotion prosody, speakers, the synthesiser);
- `corpus`: the corpus on disk (dataset-466 layout), `make_demo_corpus` (`emofuse
  demo-data`) and `ensure_demo_corpus`;
- `walkthrough`: `emofuse demo`, the whole pipeline on that corpus.
"""
