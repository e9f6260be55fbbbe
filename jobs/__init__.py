"""Entry points submitted to a Ray cluster (`python -m jobs.<name>`); `recog <name>` runs the same."""
