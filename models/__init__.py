"""models: built on ppl (see the docs)."""
