"""Data larger than memory: Parquet datasets and image shards read as streams."""
