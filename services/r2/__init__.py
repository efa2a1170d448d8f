"""Workers R2 data: the R2Store port, its S3 and local adapters, and the data routes."""

from services.r2.errors import R2Error, R2StoreConfigError, R2StoreError, R2StoreNotStarted
from services.r2.factory import open_r2_store
from services.r2.local import LocalR2Store
from services.r2.model import Conditional, ListOptions, ListPage, ObjectMeta, RangeSpec, Where
from services.r2.port import ObjectBody, R2Store
from services.r2.s3 import S3R2Store

__all__ = [
    "Conditional", "ListOptions", "ListPage", "LocalR2Store", "ObjectBody", "ObjectMeta",
    "R2Error", "R2Store", "R2StoreConfigError", "R2StoreError", "R2StoreNotStarted",
    "RangeSpec", "S3R2Store", "Where", "open_r2_store",
]
