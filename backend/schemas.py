"""Schema pieces shared by every feature: wire formats for ids and times, the envelope."""
import unicodedata
from datetime import timezone

from bson import ObjectId
from bson.errors import InvalidId
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from backend.errors import BadRequest
from backend.timezones import zone

MAX_PAGE_SIZE = 100
# Rows a page may skip: far inside the signed 64-bit integer MongoDB's skip takes (page=1e30 would
# overflow BSON); reading further than this is the export's job.
MAX_OFFSET = 1_000_000


def page_field():
    """`page` (1-based) for lists of at most MAX_PAGE_SIZE rows a page."""
    return fields.Integer(validate=validate.Range(min=1, max=MAX_OFFSET // MAX_PAGE_SIZE), load_default=1)


def offset_field():
    return fields.Integer(validate=validate.Range(min=0, max=MAX_OFFSET), load_default=0)


# Control, format (zero-width, bidirectional overrides), separator, private-use and unassigned
# characters: a name holding one could look like another or like nothing, and a value holding
# one could forge a line or reverse the text where it is shown (a CSV export, a log).
_INVISIBLE = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
# Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt) whose category is a
# letter or mark, and blank-looking letters: they show as nothing (Hangul fillers, variation
# selectors, the combining grapheme joiner, Braille blank).
_IGNORABLE = ((0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F), (0x2800, 0x2800),
              (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFFA0, 0xFFA0), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
              (0xE0000, 0xE0FFF))


def _invisible(character):
    code = ord(character)
    return unicodedata.category(character) in _INVISIBLE or any(low <= code <= high for low, high in _IGNORABLE)


def visible(text):
    """Validator: no control, format or invisible character."""
    if any(map(_invisible, text)):
        raise ValidationError("Must not contain control, format or invisible characters.")


# A tag on a generation request and its ledger record (tag filters take the same).
TAG = r"^[A-Za-z0-9_.:-]{1,64}$"


class Pattern(validate.Regexp):
    """validate.Regexp over the whole value: its `$` would also accept one trailing newline. The
    pattern, as written, is what the OpenAPI document shows."""

    def __call__(self, value):
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class ObjectIdString(fields.Field):
    """An ObjectId on the wire as its 24-hex string."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else str(value)

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return ObjectId(value)
        except (InvalidId, TypeError):
            raise ValidationError("Must be a 24-character hexadecimal id.") from None


def format_utc(value):
    """ISO 8601 in UTC with a Z suffix and milliseconds; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class UTCDateTime(fields.AwareDateTime):
    """ISO 8601 in UTC with a Z suffix and millisecond precision (what MongoDB keeps); read with any
    time zone, and as UTC when it has none."""

    def __init__(self, **kwargs):
        super().__init__(default_timezone=timezone.utc, **kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else format_utc(value)


class DateRangeSchema(Schema):
    """Inclusive day range: startDate and endDate as YYYY-MM-DD, both optional (UTC days here)."""

    start_date = fields.Date(data_key="startDate", format="%Y-%m-%d")
    end_date = fields.Date(data_key="endDate", format="%Y-%m-%d")

    @validates_schema
    def _start_not_after_end(self, data, **kwargs):
        start, end = data.get("start_date"), data.get("end_date")
        if start and end and start > end:
            raise ValidationError("startDate must be on or before endDate.", "startDate")


class LocalDateRangeSchema(DateRangeSchema):
    """Inclusive local days of a time zone: startDate and endDate as YYYY-MM-DD, and `timeZone`
    (IANA; default: the caller's organization's zone, a platform admin's UTC or the zone of the
    organization `orgId` names). The answer says which zone it used (`timeZone`)."""

    time_zone = fields.String(data_key="timeZone", validate=validate.Length(min=1, max=64),
                              metadata={"description": "IANA time zone of the days (e.g. Asia/Jakarta)"})

    @validates_schema
    def _known_zone(self, data, **kwargs):
        if data.get("time_zone") is not None:
            try:
                zone(data["time_zone"])
            except ValueError as exc:
                raise ValidationError(str(exc), "timeZone") from None


def parse_object_id(value, name):
    """A path parameter that must be an ObjectId: a bad one is a 400 naming the parameter."""
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        raise BadRequest(
            f"{name} must be a 24-character hexadecimal id", errors={name: ["Not a valid id."]}
        ) from None


_pages = {}


def page_of(item_schema):
    """A page of items: {data, total, page, limit, totalPages}."""
    if item_schema not in _pages:
        name = item_schema.__name__.replace("Schema", "") + "PageSchema"
        _pages[item_schema] = type(name, (Schema,), {
            "data": fields.List(fields.Nested(item_schema)),
            "total": fields.Integer(),
            "page": fields.Integer(),
            "limit": fields.Integer(),
            "totalPages": fields.Integer(),
        })
    return _pages[item_schema]


_envelopes = {}


def envelope(data_schema=None, many=False):
    """The success envelope {success, data, message} around a data schema, for docs and dumping."""
    key = (data_schema, many)
    if key not in _envelopes:
        name = f"{data_schema.__name__ if data_schema else 'Empty'}{'List' if many else ''}Envelope"
        attrs = {
            "success": fields.Boolean(required=True),
            "message": fields.String(required=True),
            "data": fields.Nested(data_schema, many=many) if data_schema else fields.Raw(allow_none=True),
            "timeZone": fields.String(metadata={"description": "where the answer counts days: the IANA time zone "
                                                              "of its days and periods"}),
        }
        _envelopes[key] = type(name, (Schema,), attrs)
    return _envelopes[key]


def ok(data=None, message="", time_zone=None):
    """The success envelope; `time_zone`: the zone whose local days the answer counts in."""
    envelope_ = {"success": True, "data": data, "message": message}
    if time_zone is not None:
        envelope_["timeZone"] = time_zone
    return envelope_
