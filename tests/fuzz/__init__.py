"""Property-based fuzzing of every parser that reads outside data (run with ``scripts/fuzz.sh`` for long runs)."""
