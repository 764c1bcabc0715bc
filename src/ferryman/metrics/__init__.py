"""What ferryman counts and how /-/metrics shows it (decisions/0027)."""
