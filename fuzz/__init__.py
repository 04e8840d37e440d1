"""Fuzzing tools: operation fuzzing, crash-consistency exploration, image fuzzing."""
