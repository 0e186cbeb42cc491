"""The misuse corpus: what a demanding user would try, one file per command (test_policy.py: every command)."""
