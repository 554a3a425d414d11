"""S3 adapter of ``ObjectStorage``: the private evidence bucket (all public access blocked)."""
from __future__ import annotations

from typing import Any, Iterator

from functions.core import clock
from functions.core.settings import region
from functions.safety.model import ObjectHead, StoredObject

S3_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys
_MISSING = {"404", "NoSuchKey", "NotFound"}


class S3ObjectStorage:
    def __init__(self, bucket: str, client: Any | None = None, list_page_size: int = 1000):
        if not bucket:
            raise ValueError("no evidence bucket configured (TIMEBANK_EVIDENCE_BUCKET)")
        self.bucket = bucket
        self._client = client
        self._list_page_size = list_page_size

    def _s3(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # SigV4 PUT/GET URLs and POST policies; the regional client keeps URLs valid in
            # aws-cn, which has no global S3 endpoint.
            self._client = boto3.client("s3", region_name=region(),
                                        config=Config(signature_version="s3v4"))
        return self._client

    def presign_put(self, key: str, content_type: str, size: int | None, expires_in: int) -> str:
        # Every parameter given here becomes a signed header (content-type, content-length):
        # S3 refuses a PUT whose headers differ from what was signed.
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "ContentType": content_type}
        if size is not None:
            params["ContentLength"] = size
        return self._s3().generate_presigned_url("put_object", Params=params, ExpiresIn=expires_in)

    def presign_post(self, key: str, content_type: str, max_bytes: int, expires_in: int) -> dict[str, Any]:
        # No condition may be left open: S3 refuses a form whose fields the policy does not
        # name, and everything the policy names (key, type, size range) it enforces.
        return self._s3().generate_presigned_post(
            Bucket=self.bucket, Key=key, Fields={"Content-Type": content_type},
            Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, max_bytes]],
            ExpiresIn=expires_in)

    def presign_download(self, key: str, expires_in: int) -> str:
        return self._s3().generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in)

    def head(self, key: str) -> ObjectHead | None:
        from botocore.exceptions import ClientError

        try:
            response = self._s3().head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            # A missing key is 404 only to a caller allowed to s3:ListBucket; without it S3
            # answers 403, which is raised here like any other failure.
            if error.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise
        return ObjectHead(key, int(response["ContentLength"]), response.get("ContentType", ""))

    def list(self, prefix: str) -> Iterator[StoredObject]:
        paginator = self._s3().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix,
                                       PaginationConfig={"PageSize": self._list_page_size}):
            for item in page.get("Contents", []):
                yield StoredObject(item["Key"], int(item["Size"]),
                                   item["LastModified"].astimezone(clock.CHINA_TZ))

    def delete(self, keys: list[str]) -> int:
        deleted = 0
        for start in range(0, len(keys), S3_DELETE_BATCH):
            chunk = keys[start:start + S3_DELETE_BATCH]
            response = self._s3().delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
            errors = response.get("Errors", [])
            if errors:
                raise RuntimeError(f"S3 refused to delete {len(errors)} evidence object(s): "
                                   f"{errors[0].get('Code')}")
            deleted += len(chunk)
        return deleted
