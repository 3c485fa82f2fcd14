"""sparse_assets: a Dagster asset graph that trains Korean neural sparse retrieval encoders."""
