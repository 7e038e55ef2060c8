"""Object storage: the :class:`ObjectStore` interface and its local and S3 backends.

``make_store(settings)`` returns the configured backend.
"""

from .base import InvalidKey, ObjectNotFound, ObjectStore, StoredObject, check_key
from .factory import make_store
from .local import LocalStore
from .s3 import S3Store

__all__ = [
    "InvalidKey",
    "LocalStore",
    "ObjectNotFound",
    "ObjectStore",
    "S3Store",
    "StoredObject",
    "check_key",
    "make_store",
]
