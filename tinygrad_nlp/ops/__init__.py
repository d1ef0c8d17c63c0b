"""Hand-written ops, one file per family; each op's forward and backward side by side.
Use them through ``tinygrad_nlp.functional``."""
