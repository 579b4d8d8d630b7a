"""How an S3 source's listing pages are read: by botocore (its requests, signing, retries, errors and
headers), with three changes measured on a no-change snapshot, where reading the listing is most of
the work: timestamps by the standard library, a page checked to be one whole listing before it is
parsed, and the page's XML walked by a plan made from botocore's own model of ``ListObjectsV2``
instead of botocore's general walk (a third of its time, the same result: a seeded differential test
compares the two).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.parsers import ResponseParserFactory, RestXMLParser

LISTING_OUTPUT = "ListObjectsV2Output"

_WHOLE_LISTING_PAGE = re.compile(rb"\s*(?:<\?xml[^>]*\?>\s*)?<ListBucketResult[\s>].*</ListBucketResult>\s*\Z",
                                 re.DOTALL)


def listing_timestamp(value: str) -> datetime:
    """A timestamp of an S3 response: ISO 8601 (every listed object's ``LastModified``) by the standard
    library, anything else (HTTP dates, epochs) by botocore's general parser, which cost a quarter of a
    no-change snapshot when it parsed every listed object's."""
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        from botocore.utils import parse_timestamp

        return parse_timestamp(value)


class _Unplanned(Exception):
    """The page holds what the plan does not cover: botocore's own walk reads it."""


@dataclass(frozen=True)
class _Member:
    name: str
    kind: str  # a scalar's type name, or "structure"
    repeated: bool = False  # a flattened list: one element per item
    children: dict[str, _Member] = field(default_factory=dict)  # of a structure, by XML tag


_SCALARS = frozenset({"string", "integer", "long", "boolean", "timestamp"})


def _plan(shape: Any) -> dict[str, _Member] | None:
    """A structure's members by XML tag, as botocore's XML walk finds them; None where a member is of a
    kind the plan does not read (maps, blobs, attributes, wrapped lists)."""
    plan = {}
    for name, member in shape.members.items():
        if member.serialization.get("location") or member.serialization.get("eventheader"):
            continue  # from the headers: botocore reads those itself
        if member.serialization.get("xmlAttribute"):
            return None
        item, repeated = member, False
        if member.type_name == "list":
            if not member.serialization.get("flattened"):
                return None
            item, repeated = member.member, True
        tag = (repeated and item.serialization.get("name")) or member.serialization.get("name") or name
        if item.type_name == "structure":
            children = _plan(item)
            if children is None:
                return None
            plan[tag] = _Member(name, "structure", repeated, children)
        elif item.type_name in _SCALARS:
            plan[tag] = _Member(name, item.type_name, repeated)
        else:
            return None
    return plan


class ListingPageParser(RestXMLParser):
    """botocore's REST-XML parser, but a ``ListObjectsV2`` page is walked by a plan of its model."""

    _plans: dict[str, dict[str, _Member] | None] = {}

    def _handle_structure(self, shape: Any, node: Any) -> Any:
        if shape.name == LISTING_OUTPUT and not isinstance(node, list):
            if shape.name not in self._plans:
                self._plans[shape.name] = _plan(shape)
            plan = self._plans[shape.name]
            if plan is not None:
                try:
                    return self._walk(node, plan)
                except _Unplanned:
                    pass
        return super()._handle_structure(shape, node)

    def _walk(self, node: Any, plan: dict[str, _Member]) -> dict[str, Any]:
        parsed: dict[str, Any] = {}
        for child in node:
            member = plan.get(child.tag.rpartition("}")[2])
            if member is None:
                continue  # as botocore: a tag its model does not know is left out
            value = self._walk(child, member.children) if member.kind == "structure" else self._scalar(member, child)
            if member.repeated:
                parsed.setdefault(member.name, []).append(value)
            elif member.name in parsed:
                raise _Unplanned  # botocore makes such a repeated tag a list of nodes
            else:
                parsed[member.name] = value
        return parsed

    def _scalar(self, member: _Member, node: Any) -> Any:
        if len(node):
            raise _Unplanned
        text = node.text or ""
        if member.kind == "string":
            return text
        if member.kind == "boolean":
            return text == "true"
        if member.kind == "timestamp":
            return self._timestamp_parser(text)
        try:
            return int(text)
        except ValueError:
            raise _Unplanned from None  # botocore raises its own error for it


class _ListingParserFactory(ResponseParserFactory):
    def create_parser(self, protocol_name: str) -> Any:
        if protocol_name == "rest-xml":
            return ListingPageParser(timestamp_parser=listing_timestamp)
        return super().create_parser(protocol_name)


def with_fast_listings(session: Any) -> Any:
    """A boto3 session whose clients read S3 listings as this module says (botocore's place for it, the
    session's response parser factory: only clients made from ``session`` afterwards change)."""
    factory = _ListingParserFactory()
    factory.set_parser_defaults(timestamp_parser=listing_timestamp)
    session._session.register_component("response_parser_factory", factory)
    return session


def check_listing_pages(client: Any) -> Any:
    """``client`` with each 200 response to a listing checked to be one whole ``ListBucketResult``, and
    made a 500 (which botocore retries) otherwise: an ``<Error>`` sent with a 200, a page cut short, or
    any other document, which botocore's own check let through to be read as a page without objects.
    That check parses every page as XML once more before the parser does (a sixth of a no-change
    snapshot's listing); it stays in place for every other operation. Applying this twice is harmless."""
    from botocore.handlers import _handle_200_error

    def check(operation_model: Any, response_dict: dict, **kwargs: Any) -> None:
        if operation_model.name != "ListObjectsV2":
            _handle_200_error(operation_model=operation_model, response_dict=response_dict, **kwargs)
        elif response_dict["status_code"] == 200 and not _WHOLE_LISTING_PAGE.match(response_dict["body"]):
            response_dict["status_code"] = 500

    client.meta.events.unregister("before-parse.s3.*", _handle_200_error)
    client.meta.events.register_first("before-parse.s3.*", check, unique_id="bhv360-listing-page-check")
    return client
