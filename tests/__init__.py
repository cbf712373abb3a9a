import os

# Imported before any test module: the Hub is unreachable here and in CI, so fail fast offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
