"""Object stores ferryman serves from besides a local directory (S3 and compatibles)."""
