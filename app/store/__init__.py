"""Blob storage for model files and checkpoints: local files or S3, behind one small class."""

from app.store.blobs import BlobStore, StoreUnavailable, open_store

__all__ = ["BlobStore", "StoreUnavailable", "open_store"]
