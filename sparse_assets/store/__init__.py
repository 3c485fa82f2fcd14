"""The dataset folder: where each asset lives (`layout`), atomic writes and the artifact index
(`storage`), the dense vector store, and the dataset manager behind the CLI."""
