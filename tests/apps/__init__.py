"""Package marker: these test modules share basenames with others (tests/train/test_data.py)."""
