"""Running the code samples of README.md and docs/ as written (see tests/test_doc_samples.py)."""
