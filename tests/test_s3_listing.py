"""A listing page is read by the plan of botocore's model exactly as botocore's own walk reads it.

Differential and seeded (``BHV360_SOAK_SEED``): random ``ListObjectsV2`` pages (names with every kind
of character XML can carry, optional and repeated members, tags botocore's model does not know, values
botocore refuses) are parsed by both parsers, and every result, or the error raised, must be the same.
"""

from __future__ import annotations

import os
import random
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import botocore.session
import pytest
from botocore.parsers import RestXMLParser

from bhv360_backup.s3_listing import ListingPageParser, listing_timestamp

pytestmark = pytest.mark.fast

SEED = int(os.environ.get("BHV360_SOAK_SEED", "23"))
NAMESPACE = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
NAME_CHARACTERS = "abcXYZ019 -_./!'()*&<>\"'é漢🚒\t\n" + "\u00a0\u2028"


def output_shape():
    model = botocore.session.get_session().get_service_model("s3")
    return model.operation_model("ListObjectsV2").output_shape


def text(rng: random.Random, empty: bool = True) -> str:
    size = rng.randint(0 if empty else 1, 12)
    return "".join(rng.choice(NAME_CHARACTERS) for _ in range(size))


def element(rng: random.Random, tag: str, value: str) -> str:
    return f"<{tag}>{escape(value)}</{tag}>" if value or rng.random() < 0.5 else f"<{tag}/>"


def timestamp(rng: random.Random) -> str:
    return rng.choice(["2026-12-06T10:00:00.123Z", "2026-12-06T10:00:00Z", "2026-12-06T11:00:00.5+01:00",
                       "Sun, 06 Dec 2026 10:00:00 GMT"])


def integer(rng: random.Random) -> str:
    return rng.choice([str(rng.randint(0, 10**12)), "0", "-1"] * 20 + ["", "12.5", "x"])


def an_object(rng: random.Random) -> str:
    parts = [element(rng, "Key", text(rng, empty=False)), element(rng, "LastModified", timestamp(rng)),
             element(rng, "ETag", f'"{rng.getrandbits(128):032x}"'), element(rng, "Size", integer(rng)),
             element(rng, "StorageClass", rng.choice(["STANDARD", "GLACIER", ""]))]
    parts += [element(rng, "ChecksumAlgorithm", rng.choice(["CRC32", "SHA256"])) for _ in range(rng.choice([0, 0, 1, 2]))]
    if rng.random() < 0.3:
        parts.append(element(rng, "ChecksumType", rng.choice(["FULL_OBJECT", "COMPOSITE"])))
    if rng.random() < 0.3:
        parts.append(f"<Owner>{element(rng, 'ID', text(rng))}{element(rng, 'DisplayName', text(rng))}</Owner>")
    if rng.random() < 0.2:
        parts.append(f"<RestoreStatus>{element(rng, 'IsRestoreInProgress', rng.choice(['true', 'false', 'TRUE']))}"
                     f"{element(rng, 'RestoreExpiryDate', timestamp(rng))}</RestoreStatus>")
    if rng.random() < 0.1:
        parts.append(rng.choice(["<Unknown>x</Unknown>", "<UserMetadata><a>1</a></UserMetadata>", "<Key>again</Key>",
                                 "<Size>1</Size>", "<Owner><ID>o</ID></Owner><Owner><ID>p</ID></Owner>"]))
    rng.shuffle(parts)
    return f"<Contents>{''.join(parts)}</Contents>"


def a_page(rng: random.Random) -> bytes:
    parts = [element(rng, "Name", text(rng, empty=False)), element(rng, "Prefix", text(rng)), element(rng, "KeyCount", integer(rng)),
             element(rng, "MaxKeys", integer(rng)), element(rng, "IsTruncated", rng.choice(["true", "false"]))]
    for tag in ("ContinuationToken", "NextContinuationToken", "StartAfter", "Delimiter", "EncodingType"):
        if rng.random() < 0.3:
            parts.append(element(rng, tag, text(rng)))
    parts += [an_object(rng) for _ in range(rng.choice([0, 1, 2, 5, 40]))]
    parts += [f"<CommonPrefixes>{element(rng, 'Prefix', text(rng))}</CommonPrefixes>" for _ in range(rng.choice([0, 0, 2]))]
    if rng.random() < 0.1:
        parts.append(rng.choice(["<Unknown/>", "<IsTruncated>true</IsTruncated>", "<KeyCount><n>1</n></KeyCount>"]))
    rng.shuffle(parts)
    declaration = '<?xml version="1.0" encoding="UTF-8"?>\n' if rng.random() < 0.8 else ""
    namespace = NAMESPACE if rng.random() < 0.9 else ""
    return f"{declaration}<ListBucketResult{namespace}>{''.join(parts)}</ListBucketResult>".encode()


def comparable(value):
    """A parse result with botocore's stray XML nodes (of a tag repeated where one is expected) as text."""
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [comparable(item) for item in value]
    if isinstance(value, ElementTree.Element):
        return ElementTree.tostring(value)
    return value


def parsed_or_error(parser, page: bytes, shape):
    response = {"body": page, "status_code": 200, "headers": {"x-amz-request-id": "r1", "x-amz-request-charged": "requester"}}
    try:
        return comparable(parser.parse(response, shape))
    except Exception as error:  # noqa: BLE001 - the error itself is compared
        return type(error), str(error)


def test_a_listing_page_is_read_as_botocore_reads_it(monkeypatch):
    rng = random.Random(SEED)
    shape = output_shape()
    walked = []
    real_walk = ListingPageParser._walk
    monkeypatch.setattr(ListingPageParser, "_walk", lambda self, node, plan: walked.append(1) or real_walk(self, node, plan))
    botocores, ours = RestXMLParser(timestamp_parser=listing_timestamp), ListingPageParser(timestamp_parser=listing_timestamp)
    pages = 400
    for number in range(pages):
        page = a_page(rng)
        expected = parsed_or_error(botocores, page, shape)
        assert parsed_or_error(ours, page, shape) == expected, f"seed {SEED}, page {number}: {page!r}"
    assert len(walked) > pages * 0.6, "the plan read too few pages itself: the test compares botocore with itself"
