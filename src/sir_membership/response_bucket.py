"""CloudFormation's custom-resource response bucket for one region, and the URLs that reach it (pure).

CloudFormation hands a custom resource a ResponseURL that is a pre-signed PUT
to an object in the bucket ``cloudformation-custom-resource-response-<region
without dashes>`` (for example ``…-useast1``; AWS's page "Access
CloudFormation using an interface endpoint" names it for VPC endpoint
policies). AWS owns that bucket; a bucket name is global, so no one else can.
Any other host under ``amazonaws.com`` can be anyone's: a bucket
(``attacker.s3.amazonaws.com``), an API Gateway stage, a Lambda function URL.
An answer PUT there hands the membership's ARN, account and status to its
owner, and carrying out the event would be a write nobody asked
CloudFormation for. So the function's default is that one bucket of its own
region and nothing else.

The bucket is reached through one of S3's endpoints for the region, with the
partition's DNS suffix (from botocore's ``partitions.json``, the data its
clients resolve endpoints with: ``cn-*`` is ``amazonaws.com.cn``,
``us-gov-*`` ``amazonaws.com``):

* virtual-hosted, ``<bucket>.<endpoint>``: the form CloudFormation's events
  carry (``…-useast1.s3.amazonaws.com``, ``…-euwest1.s3-eu-west-1.amazonaws.com``,
  ``…-cnnorth1.s3.cn-north-1.amazonaws.com.cn``, ``….s3.<region>.amazonaws.com``);
* path-style, ``<endpoint>/<bucket>/<key>``.

The endpoints are ``s3.<region>``, ``s3-<region>``, ``s3.dualstack.<region>``,
``s3-fips.<region>``, ``s3-fips.dualstack.<region>`` and, in the ``aws``
partition only, the global ``s3.amazonaws.com``. Each reaches the same
bucket, so accepting one CloudFormation does not use today costs nothing;
an endpoint of another region, or another suffix, is refused all the same.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from botocore.loaders import create_loader

BUCKET_PREFIX = "cloudformation-custom-resource-response-"
#: What a region name looks like (``us-east-1``, ``us-gov-west-1``, ``eusc-de-east-1``).
_REGION = re.compile(r"[a-z]{2,}(?:-[a-z]+){1,3}-\d{1,2}")
#: The partition with a global S3 endpoint (``s3.amazonaws.com``).
_GLOBAL_ENDPOINT_PARTITION = "aws"
_DOT_SEGMENT = re.compile(r"(?:^|/)\.{1,2}(?:/|$)")


@functools.cache
def _partitions() -> tuple[Mapping[str, Any], ...]:
    """botocore's partitions (ids, region patterns, DNS suffixes), read once."""
    return tuple(create_loader().load_data("partitions")["partitions"])


def partition_of(region: str) -> tuple[str, str]:
    """``(partition, DNS suffix)`` of ``region``, as botocore resolves it (``aws`` if none)."""
    known = _partitions()
    for partition in known:
        if region in partition.get("regions", {}) or re.match(partition["regionRegex"], region):
            outputs = partition["outputs"]
            return str(outputs["name"]), str(outputs["dnsSuffix"])
    fallback = next(p for p in known if p["id"] == _GLOBAL_ENDPOINT_PARTITION)["outputs"]
    return str(fallback["name"]), str(fallback["dnsSuffix"])


@dataclass(frozen=True)
class ResponseBucket:
    """CloudFormation's response bucket in one region, and the hosts that reach it."""

    region: str
    partition: str
    dns_suffix: str

    @classmethod
    def for_region(cls, region: str) -> ResponseBucket | None:
        """The bucket of ``region``; None if ``region`` does not read as a region name."""
        if not _REGION.fullmatch(region):
            return None
        partition, suffix = partition_of(region)
        return cls(region, partition, suffix)

    @property
    def name(self) -> str:
        """The bucket's name: CloudFormation writes the region without its dashes."""
        return BUCKET_PREFIX + self.region.replace("-", "")

    @property
    def endpoints(self) -> frozenset[str]:
        """S3's endpoint hosts for the region (path-style hosts)."""
        region, suffix = self.region, self.dns_suffix
        hosts = {
            f"s3.{region}.{suffix}",
            f"s3-{region}.{suffix}",
            f"s3.dualstack.{region}.{suffix}",
            f"s3-fips.{region}.{suffix}",
            f"s3-fips.dualstack.{region}.{suffix}",
        }
        if self.partition == _GLOBAL_ENDPOINT_PARTITION:
            hosts.add(f"s3.{suffix}")
        return frozenset(hosts)

    @property
    def virtual_hosts(self) -> frozenset[str]:
        """``<bucket>.<endpoint>`` for each endpoint."""
        return frozenset(f"{self.name}.{endpoint}" for endpoint in self.endpoints)

    def reached_by(self, host: str, path: str) -> bool:
        """Whether a PUT to ``https://<host><path>`` writes into this bucket.

        ``host`` must already be a bare, lower-case host name (no user info,
        port or trailing dot): ``guard.response_origin`` makes sure of it.
        A path-style path must name the bucket as its first segment, exactly
        (bucket names are lower case), followed by a key with no ``.`` or
        ``..`` segment that a client or proxy could resolve elsewhere.
        """
        if host in self.virtual_hosts:
            return True
        prefix = f"/{self.name}/"
        return (
            host in self.endpoints
            and path.startswith(prefix)
            and len(path) > len(prefix)
            and not _DOT_SEGMENT.search(path[len(prefix) :])
        )


def reaches(bucket: ResponseBucket, url: str) -> bool:
    """Whether ``url``'s host and path reach ``bucket`` (scheme and origin checked by the caller)."""
    parts = urlsplit(url)
    return bucket.reached_by((parts.hostname or "").lower(), parts.path)
