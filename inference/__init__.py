"""inference: built on ppl (see the docs)."""
