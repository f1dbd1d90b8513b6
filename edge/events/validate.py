"""Is a received payload a fer-edge message? Checked against the JSON Schemas in ``schema/`` (stdlib only,
Python 3.6 compatible).

A consumer must not trust what arrives on ``<prefix>/#``: anyone allowed to publish there can send
``{"faces": "nope"}``. :meth:`PayloadChecker.problem` says what is wrong with a decoded payload for its
topic kind (None when it is a valid message), so that consumers skip it instead of failing on it.

The checker knows the draft-07 keywords the schemas use (``type``, ``const``, ``enum``,
``required``, ``properties``, ``additionalProperties``, ``propertyNames``, ``minProperties``,
``items``, ``additionalItems``, ``minItems``, ``maxItems``, ``minimum``, ``maximum``,
``minLength``, ``maxLength``, ``pattern``, ``$ref`` to ``#/definitions``, ``allOf``, ``anyOf``,
``oneOf``, ``not``, ``if``/``then``/``else``; ``format`` is not asserted, as in draft-07's default)
and refuses a schema with any other, so that a schema change cannot be skipped silently. It reads
as a tolerant reader: ``additionalProperties: false`` is not enforced unless ``strict`` (keys the
schema does not know yet, added within a schema version by a newer agent, are ignored; a known
key with a wrong type is not). ``tests/test_consumers.py`` compares it with the ``jsonschema``
package.
"""

import re

from edge.events.payloads import SCHEMA_FILES, load_schema

# topic kind (edge.delivery.url.TOPIC_KINDS) -> schema name (edge.events.payloads.SCHEMA_FILES)
KIND_SCHEMAS = {"events": "emotion-event", "tracks": "track", "state": "state", "status": "status", "stats": "stats"}
SCHEMA_IDS = dict(("fer-edge/" + name, name) for name in SCHEMA_FILES)  # the payloads' "schema" field

_ANNOTATIONS = ("$schema", "$id", "title", "description", "format", "definitions", "default", "examples", "$comment")
_KEYWORDS = frozenset(
    (
        "type",
        "const",
        "enum",
        "required",
        "properties",
        "additionalProperties",
        "propertyNames",
        "minProperties",
        "items",
        "additionalItems",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "$ref",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
    )
    + _ANNOTATIONS
)
_SHOWN = 40  # characters of a wrong value quoted in a problem
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]{1,40}$")  # a key shown as it is in a problem's path


class SchemaError(ValueError):
    """The schema uses a keyword this checker does not know."""


def _is_type(value, name):
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if name == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, (int, float))
    raise SchemaError("unknown type {!r}".format(name))


def _equal(a, b):
    """JSON equality (``1 == 1.0``, but ``True != 1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    same = type(a) is type(b) or (isinstance(a, (int, float)) and isinstance(b, (int, float)))
    return same and a == b


def shown(value):
    """A short, printable quote of a value (``repr`` escapes control characters)."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


class Checker(object):
    """One schema (a dict); :meth:`problem` is the first thing wrong with a value, or None."""

    def __init__(self, schema, strict=False):
        self.root = schema
        self.strict = bool(strict)
        self._patterns = {}
        self._plans = {}  # id(sub-schema) -> the checks its keywords need (sub-schemas live as long as root)
        self._strings = {}  # id(enum list) -> its strings, for a set lookup
        self._check_keywords(schema)

    def _check_keywords(self, schema):
        if isinstance(schema, bool):
            return
        unknown = sorted(set(schema) - _KEYWORDS)
        if unknown:
            raise SchemaError("schema keyword(s) {} not supported".format(", ".join(unknown)))
        for key in ("properties", "definitions"):
            for sub in schema.get(key, {}).values():
                self._check_keywords(sub)
        for key in ("additionalProperties", "propertyNames", "additionalItems", "not", "if", "then", "else"):
            if isinstance(schema.get(key), (dict, bool)):
                self._check_keywords(schema[key])
        items = schema.get("items")
        for sub in items if isinstance(items, list) else [items] if items is not None else []:
            self._check_keywords(sub)
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in schema.get(key, []):
                self._check_keywords(sub)

    def problem(self, value, schema=None, path=()):
        """The first problem of ``value`` under ``schema`` (default: the root) as ``path: what``, or None.
        ``path``: the keys and indexes that lead to ``value``."""
        schema = self.root if schema is None else schema
        if schema is True:
            return None
        if schema is False:
            return _at(path, "not allowed")
        plan = self._plans.get(id(schema))
        if plan is None:
            plan = self._plans[id(schema)] = self._plan(schema)
        for check in plan:
            found = check(value, schema, path)
            if found:
                return found
        return None

    def _plan(self, schema):
        """The checks whose keywords ``schema`` has, in order."""
        keywords = set(schema)
        groups = (
            (self._ref, ("$ref",)),
            (self._kind, ("type", "const", "enum")),
            (self._number, ("minimum", "maximum")),
            (self._string, ("minLength", "maxLength", "pattern")),
            (self._object, ("required", "minProperties", "properties", "additionalProperties", "propertyNames")),
            (self._array, ("minItems", "maxItems", "items", "additionalItems")),
            (self._logic, ("allOf", "anyOf", "oneOf", "not", "if")),
        )
        return tuple(check for check, names in groups if keywords.intersection(names))

    def _in_enum(self, value, enum):
        if isinstance(value, str):
            strings = self._strings.get(id(enum))
            if strings is None:
                strings = self._strings[id(enum)] = frozenset(e for e in enum if isinstance(e, str))
            return value in strings
        return any(_equal(value, e) for e in enum)

    def _ref(self, value, schema, path):
        ref = schema.get("$ref")
        if ref is None:
            return None
        if not ref.startswith("#/definitions/"):
            raise SchemaError("$ref {!r} not supported".format(ref))
        return self.problem(value, self.root["definitions"][ref[len("#/definitions/") :]], path)

    def _kind(self, value, schema, path):
        types = schema.get("type")
        if types is not None:
            names = types if isinstance(types, list) else [types]
            if not any(_is_type(value, t) for t in names):
                return _at(path, "{} is not of type {}".format(shown(value), " or ".join(names)))
        if "const" in schema and not _equal(value, schema["const"]):
            return _at(path, "{} is not {}".format(shown(value), shown(schema["const"])))
        if "enum" in schema and not self._in_enum(value, schema["enum"]):
            return _at(path, "{} is not one of the allowed values".format(shown(value)))
        return None

    def _number(self, value, schema, path):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if "minimum" in schema and not value >= schema["minimum"]:
            return _at(path, "{} is below {}".format(shown(value), schema["minimum"]))
        if "maximum" in schema and not value <= schema["maximum"]:
            return _at(path, "{} is above {}".format(shown(value), schema["maximum"]))
        return None

    def _string(self, value, schema, path):
        if not isinstance(value, str):
            return None
        if "minLength" in schema and len(value) < schema["minLength"]:
            return _at(path, "{} is too short".format(shown(value)))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return _at(path, "{} is too long".format(shown(value)))
        pattern = schema.get("pattern")
        if pattern is not None:
            compiled = self._patterns.get(pattern)
            if compiled is None:
                compiled = self._patterns[pattern] = re.compile(pattern)
            if not compiled.search(value):
                return _at(path, "{} does not have the expected form".format(shown(value)))
        return None

    def _object(self, value, schema, path):
        if not isinstance(value, dict):
            return None
        for key in schema.get("required", ()):
            if key not in value:
                return _at(path, "{} is missing".format(shown(key)))
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            return _at(path, "has too few keys")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        names = schema.get("propertyNames")
        for key in value:
            where = path + (key,)
            if names is not None:
                found = self.problem(key, names, where)
                if found:
                    return _at(where, "the key is not allowed")
            if key in properties:
                found = self.problem(value[key], properties[key], where)
            elif extra is False:
                found = _at(where, "unknown key") if self.strict else None
            else:
                found = self.problem(value[key], extra, where)
            if found:
                return found
        return None

    def _array(self, value, schema, path):
        if not isinstance(value, list):
            return None
        if "minItems" in schema and len(value) < schema["minItems"]:
            return _at(path, "has fewer than {} items".format(schema["minItems"]))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return _at(path, "has more than {} items".format(schema["maxItems"]))
        items = schema.get("items", True)
        for i, item in enumerate(value):
            if isinstance(items, list):
                sub = items[i] if i < len(items) else schema.get("additionalItems", True)
            else:
                sub = items
            found = self.problem(item, sub, path + (i,))
            if found:
                return found
        return None

    def _logic(self, value, schema, path):
        for sub in schema.get("allOf", ()):
            found = self.problem(value, sub, path)
            if found:
                return found
        if "anyOf" in schema and all(self.problem(value, sub, path) for sub in schema["anyOf"]):
            return _at(path, "{} matches none of the allowed forms".format(shown(value)))
        if "oneOf" in schema and sum(1 for sub in schema["oneOf"] if not self.problem(value, sub, path)) != 1:
            return _at(path, "{} does not match exactly one of the allowed forms".format(shown(value)))
        if "not" in schema and not self.problem(value, schema["not"], path):
            return _at(path, "has a form that is not allowed")
        if "if" in schema:
            branch = "else" if self.problem(value, schema["if"], path) else "then"
            if branch in schema:
                return self.problem(value, schema[branch], path)
        return None


def _at(path, what):
    """``what`` with the path of keys and indexes before it (``faces[0].box: ...``)."""
    text = ""
    for step in path:
        if isinstance(step, int):
            text += "[{}]".format(step)
        else:
            text += ("." if text else "") + (step if _PLAIN_KEY.match(step) else shown(step))
    return "{}: {}".format(text, what) if text else what


class PayloadChecker(object):
    """Every fer-edge schema, loaded once: :meth:`problem` of a payload for its topic kind."""

    def __init__(self, strict=False):
        self.checkers = dict((name, Checker(load_schema(name), strict)) for name in SCHEMA_FILES)

    def problem(self, data, kind=None):
        """What is wrong with ``data`` (a decoded JSON payload) as a message of the topic kind
        ``kind`` (events, tracks, state, status, stats; None: from its ``schema`` field), or None.

        Not a JSON object, a ``schema`` field that is not fer-edge's or not the topic kind's, or a
        payload its schema rejects are problems."""
        if not isinstance(data, dict):
            return "not a JSON object"
        expected = KIND_SCHEMAS.get(kind)
        schema = data.get("schema")
        name = SCHEMA_IDS.get(schema) if isinstance(schema, str) else None
        if name is None:
            if "schema" not in data:
                return "no schema field"
            return "schema {} is not a fer-edge message".format(shown(data.get("schema")))
        if expected is not None and name != expected:
            return "a {} message on the {} topic".format(name, kind)
        return self.checkers[name].problem(data)
