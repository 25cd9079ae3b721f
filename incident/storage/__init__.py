"""Object storage: `s3://`, `gs://` and `az://` URLs for inputs and results.

`locations` tells a URL from a local path and holds the `--storage-option` table, the one
place where an option's name for polars (object_store's) is mapped to pyarrow.fs's, and where
secrets are kept out of messages. `objects` lists, stats, hashes, reads and writes objects
through pyarrow.fs; polars reads the Parquet data itself with the same options.
"""
