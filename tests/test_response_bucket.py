"""Which ResponseURLs the function answers by default: CloudFormation's response bucket, own region.

CloudFormation's ResponseURL is a pre-signed PUT to the S3 bucket
``cloudformation-custom-resource-response-<region without dashes>`` (AWS's
"Access CloudFormation using an interface endpoint" page; the host forms
below are the ones seen in published events: ``…useast1.s3.amazonaws.com``,
``…euwest1.s3-eu-west-1.amazonaws.com``, ``…cnnorth1.s3.cn-north-1.amazonaws.com.cn``,
``…useast1.s3.us-east-1.amazonaws.com``). Anything else, in particular any
other bucket or API Gateway host under ``amazonaws.com``, is not answered.
The expected sets are written out here, not taken from the implementation.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.provisional import domains

from sir_membership import guard

PREFIX = "cloudformation-custom-resource-response-"
BUCKET = f"{PREFIX}useast1"
SIG = "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=0b3c"
KEY = "arn%3Aaws%3Acloudformation%3Aus-east-1%3A123456789012%3Astack/demo/1%7CMembership%7C2"


def admits(region: str, url: str) -> bool:
    return guard.Policy.from_environ({"AWS_REGION": region}).admits(url)


ACCEPTED = [
    # virtual-hosted, the forms CloudFormation's events carry
    ("us-east-1", f"https://{BUCKET}.s3.amazonaws.com/{KEY}{SIG}"),
    ("us-east-1", f"https://{BUCKET}.s3.us-east-1.amazonaws.com/{KEY}{SIG}"),
    ("us-east-1", f"https://{BUCKET}.s3-us-east-1.amazonaws.com/{KEY}{SIG}"),
    ("eu-west-1", f"https://{PREFIX}euwest1.s3-eu-west-1.amazonaws.com/{KEY}{SIG}"),
    ("eu-west-1", f"https://{PREFIX}euwest1.s3.eu-west-1.amazonaws.com/{KEY}{SIG}"),
    ("ap-southeast-2", f"https://{PREFIX}apsoutheast2.s3.ap-southeast-2.amazonaws.com/k"),
    ("cn-north-1", f"https://{PREFIX}cnnorth1.s3.cn-north-1.amazonaws.com.cn/{KEY}{SIG}"),
    ("cn-northwest-1", f"https://{PREFIX}cnnorthwest1.s3.cn-northwest-1.amazonaws.com.cn/k"),
    ("us-gov-west-1", f"https://{PREFIX}usgovwest1.s3.us-gov-west-1.amazonaws.com/k"),
    ("us-gov-west-1", f"https://{PREFIX}usgovwest1.s3-us-gov-west-1.amazonaws.com/k"),
    # the same bucket at S3's other endpoints for the region
    ("us-east-1", f"https://{BUCKET}.s3.dualstack.us-east-1.amazonaws.com/k"),
    ("us-east-1", f"https://{BUCKET}.s3-fips.us-east-1.amazonaws.com/k"),
    # path-style: the bucket is the first path segment
    ("us-east-1", f"https://s3.amazonaws.com/{BUCKET}/{KEY}{SIG}"),
    ("us-east-1", f"https://s3.us-east-1.amazonaws.com/{BUCKET}/{KEY}{SIG}"),
    ("us-east-1", f"https://s3-us-east-1.amazonaws.com/{BUCKET}/k"),
    ("eu-west-1", f"https://s3-eu-west-1.amazonaws.com/{PREFIX}euwest1/k"),
    ("cn-north-1", f"https://s3.cn-north-1.amazonaws.com.cn/{PREFIX}cnnorth1/k"),
    # host case and the default port do not matter
    ("us-east-1", f"HTTPS://{BUCKET.upper()}.S3.AmazonAWS.com/k"),
    ("us-east-1", f"https://{BUCKET}.s3.amazonaws.com:443/k"),
]

REFUSED = [
    # the review's three attacker URLs: any bucket, any API Gateway host
    ("us-east-1", f"https://attacker-bucket.s3.amazonaws.com/k{SIG}"),
    ("us-east-1", f"https://attacker-bucket.s3.us-east-1.amazonaws.com/k{SIG}"),
    ("us-east-1", f"https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod/k{SIG}"),
    # another region's response bucket, and this region's bucket at another region's endpoint
    ("us-east-1", f"https://{PREFIX}uswest2.s3.us-west-2.amazonaws.com/k"),
    ("us-east-1", f"https://{PREFIX}uswest2.s3.amazonaws.com/k"),
    ("us-east-1", f"https://{BUCKET}.s3.us-west-2.amazonaws.com/k"),
    ("eu-west-1", f"https://{BUCKET}.s3.amazonaws.com/k"),
    ("us-east-1", f"https://{PREFIX}cnnorth1.s3.cn-north-1.amazonaws.com.cn/k"),
    ("cn-north-1", f"https://{PREFIX}cnnorth1.s3.cn-north-1.amazonaws.com/k"),
    ("cn-north-1", f"https://{PREFIX}cnnorth1.s3.amazonaws.com/k"),
    ("us-gov-west-1", f"https://{PREFIX}usgovwest1.s3.amazonaws.com/k"),
    # bucket names anyone could register: dashed region, prefix, suffix, a dotted name
    ("us-east-1", "https://cloudformation-custom-resource-response-us-east-1.s3.amazonaws.com/k"),
    ("us-east-1", f"https://evil-{BUCKET}.s3.amazonaws.com/k"),
    ("us-east-1", f"https://{BUCKET}x.s3.amazonaws.com/k"),
    ("us-east-1", f"https://{BUCKET}.evil.s3.amazonaws.com/k"),
    ("us-east-1", f"https://evil.{BUCKET}.s3.amazonaws.com/k"),
    # look-alike hosts
    ("us-east-1", f"https://{BUCKET}.s3.amazonaws.com.attacker.example/k"),
    ("us-east-1", f"https://{BUCKET}.s3.amazonaws.com.cn/k"),
    ("us-east-1", f"https://{BUCKET}.s3.amazonaws.co/k"),
    ("us-east-1", f"https://{BUCKET}.s3.amazonaws.com./k"),
    ("us-east-1", f"https://{BUCKET}.s3-website-us-east-1.amazonaws.com/k"),
    ("us-east-1", f"https://{BUCKET}.amazonaws.com/k"),
    # scheme, user info, port, fragment tricks
    ("us-east-1", f"http://{BUCKET}.s3.amazonaws.com/k"),
    ("us-east-1", f"https://u:p@{BUCKET}.s3.amazonaws.com/k"),
    ("us-east-1", f"https://{BUCKET}.s3.amazonaws.com@attacker.example/k"),
    ("us-east-1", f"https://{BUCKET}.s3.amazonaws.com:8443/k"),
    ("us-east-1", f"https://attacker.example#@{BUCKET}.s3.amazonaws.com/k"),
    ("us-east-1", f"https://attacker.example/{BUCKET}.s3.amazonaws.com/k"),
    # path-style with any other first segment
    ("us-east-1", f"https://s3.amazonaws.com/attacker-bucket/k{SIG}"),
    ("us-east-1", f"https://s3.us-east-1.amazonaws.com/attacker-bucket/{BUCKET}/k"),
    ("us-east-1", f"https://s3.us-east-1.amazonaws.com/{BUCKET}evil/k"),
    ("us-east-1", f"https://s3.us-east-1.amazonaws.com/{BUCKET}"),
    ("us-east-1", f"https://s3.us-east-1.amazonaws.com/{BUCKET}%2F..%2Fevil/k"),
    ("us-east-1", f"https://s3.us-east-1.amazonaws.com/{BUCKET}/../attacker-bucket/k"),
    ("us-east-1", f"https://s3.us-east-1.amazonaws.com/{BUCKET.upper()}/k"),
    ("us-east-1", f"https://s3.us-east-1.amazonaws.com//{BUCKET}/k"),
    ("us-east-1", f"https://s3.us-east-1.amazonaws.com/?bucket={BUCKET}"),
    ("us-east-1", f"https://s3.us-west-2.amazonaws.com/{BUCKET}/k"),
    # not URLs CloudFormation sends
    ("us-east-1", "https://52.216.0.1/k"),
    ("us-east-1", f"https://{BUCKET}.s3.amazonaws.com/k\n"),
    ("us-east-1", ""),
    ("us-east-1", None),
]


@pytest.mark.parametrize(("region", "url"), ACCEPTED)
def test_cloudformations_response_urls_for_the_functions_region_are_answered(
    region: str, url: str
) -> None:
    assert admits(region, url)


@pytest.mark.parametrize(("region", "url"), REFUSED)
def test_every_other_url_is_refused(region: str, url: str | None) -> None:
    assert not admits(region, url or "")


@pytest.mark.parametrize("region", ["", "us-east-1.evil", "US-EAST-1", "us_east_1", "../x"])
def test_without_a_readable_region_nothing_is_answered(region: str) -> None:
    environ = {"AWS_REGION": region} if region else {}
    policy = guard.Policy.from_environ(environ)
    assert not policy.admits(f"https://{BUCKET}.s3.amazonaws.com/k")
    assert not policy.admits(f"https://s3.amazonaws.com/{BUCKET}/k")


def test_response_url_patterns_replace_the_default() -> None:
    """The local stand-ins' override: its patterns, and nothing of the default."""
    policy = guard.Policy.from_environ(
        {"AWS_REGION": "us-east-1", "RESPONSE_URL_PATTERNS": "https://127.0.0.1:*"}
    )
    assert policy.admits("https://127.0.0.1:4443/cfn/x")
    assert not policy.admits(f"https://{BUCKET}.s3.amazonaws.com/k")


# --- the property: no host outside the forms is answered ----------------------------

REGIONS = ["us-east-1", "eu-west-1", "ap-northeast-3", "cn-north-1", "us-gov-east-1"]


def forms(region: str) -> tuple[set[str], set[str]]:
    """(virtual-hosted hosts, path-style hosts) of the region's response bucket, written out."""
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    bucket = "cloudformation-custom-resource-response-" + region.replace("-", "")
    endpoints = {
        f"s3.{region}.{suffix}",
        f"s3-{region}.{suffix}",
        f"s3.dualstack.{region}.{suffix}",
        f"s3-fips.{region}.{suffix}",
        f"s3-fips.dualstack.{region}.{suffix}",
    }
    if not region.startswith(("cn-", "us-gov-")):
        endpoints.add("s3.amazonaws.com")
    return {f"{bucket}.{e}" for e in endpoints}, endpoints


def near(host: str) -> st.SearchStrategy[str]:
    """Hosts one edit (or one label) away from ``host``."""
    alphabet = string.ascii_lowercase + string.digits + "-."
    at = st.integers(0, len(host))
    return st.one_of(
        st.builds(lambda i, c: host[:i] + c + host[i:], at, st.sampled_from(alphabet)),
        st.builds(lambda i: host[:i] + host[i + 1 :], at),
        st.builds(lambda i, c: host[:i] + c + host[i + 1 :], at, st.sampled_from(alphabet)),
        st.builds(lambda label: f"{label}.{host}", domains().map(lambda d: d.split(".")[0])),
        st.builds(lambda d: f"{host}.{d}", domains()),
    )


@st.composite
def hosts(draw: st.DrawFn) -> tuple[str, str]:
    region = draw(st.sampled_from(REGIONS))
    virtual, path = forms(draw(st.sampled_from(REGIONS)))
    host = draw(
        st.one_of(
            domains(),
            st.sampled_from(sorted(virtual | path)),
            st.sampled_from(sorted(virtual | path)).flatmap(near),
        )
    )
    return region, host


BUCKETS = ["cloudformation-custom-resource-response-" + r.replace("-", "") for r in REGIONS]


@settings(max_examples=400, deadline=None, database=None)
@given(drawn=hosts(), segment=st.sampled_from(["k", *BUCKETS]))
def test_a_host_of_no_accepted_form_is_never_answered(drawn: tuple[str, str], segment: str) -> None:
    region, host = drawn
    virtual, path = forms(region)
    bucket = "cloudformation-custom-resource-response-" + region.replace("-", "")
    expected_virtual = host.lower() in virtual
    assert admits(region, f"https://{host}/k") == expected_virtual
    expected_path = expected_virtual or (host.lower() in path and segment == bucket)
    assert admits(region, f"https://{host}/{segment}/k") == expected_path
