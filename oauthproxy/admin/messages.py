"""Schema violations in words a person understands (pure).

jsonschema's own messages quote the schema (``'x y' does not match
'^[A-Za-z0-9](?:...)$'``); the API, the CLI and the web console show
:func:`describe` instead: the field by name, then what it must be, e.g.
``hostname must be a DNS name such as app.example.com``.  A ``pattern`` says
what it means through the schema's ``x-error`` words (see
:func:`oauthproxy.admin.schema.string`), else its ``description``; every other
keyword has a fixed phrase here.  The offending value is quoted only when it
is short, and the message is bounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jsonschema.exceptions import ValidationError, best_match

#: longest detail sent back
MAX_DETAIL = 200
#: longest offending value quoted in a detail
_MAX_QUOTED = 40
#: the words of each JSON type, as "must be ..." completes them
_TYPES = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}
#: the words of each ``format``
_FORMATS = {"email": "an e-mail address such as ops@example.com"}


def field_name(path: Iterable[str | int]) -> str:
    """A field's path as people write it: ``parts[1].label``; ``the body`` at the root."""
    name = ""
    for part in path:
        if isinstance(part, int) or (isinstance(part, str) and part.isdigit()):
            name += f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or "the body"


def _quoted(value: object) -> str:
    """`` (not 'value')`` for a short scalar, else nothing."""
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        return ""
    text = repr(value)
    return f" (not {text})" if len(text) <= _MAX_QUOTED else ""


def _plural(count: int, noun: str) -> str:
    """``1 character``, ``2 characters``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _choices(values: Sequence[Any]) -> str:
    """``a, b or c``."""
    shown = [str(v) for v in values]
    if len(shown) == 1:
        return shown[0]
    return ", ".join(shown[:-1]) + " or " + shown[-1]


def _pattern_words(schema: Mapping[str, Any]) -> str:
    """What a pattern stands for, from the schema's ``x-error`` or ``description``."""
    words = schema.get("x-error")
    if isinstance(words, str) and words:
        return f"must be {words}"
    description = schema.get("description")
    if isinstance(description, str) and description:
        return f"has characters that are not allowed (expected: {description})"
    return "has characters that are not allowed here"


def _type_words(expected: object) -> str:
    """``must be a number`` (or ``must be a number or null``)."""
    kinds = expected if isinstance(expected, list) else [expected]
    return "must be " + " or ".join(_TYPES.get(str(kind), str(kind)) for kind in kinds)


def _phrase(error: ValidationError) -> str:
    """What is wrong, without the field name (``must be ...``, ``is required``)."""
    keyword = error.validator
    expected: Any = error.validator_value
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    instance = error.instance
    if keyword == "type":
        return _type_words(expected)
    if keyword == "pattern":
        return _pattern_words(schema) + _quoted(instance)
    if keyword == "format":
        return f"must be {_FORMATS.get(str(expected), f'a valid {expected}')}" + _quoted(instance)
    if keyword == "enum":
        return f"must be one of {_choices(list(expected))}" + _quoted(instance)
    if keyword == "const":
        return f"must be {expected!r}"
    if keyword == "minLength":
        return "must not be empty" if expected == 1 else f"must be at least {expected} long"
    if keyword == "maxLength":
        return f"must be at most {_plural(int(expected), 'character')} long"
    if keyword == "minimum":
        return f"must be at least {expected}"
    if keyword == "maximum":
        return f"must be at most {expected}"
    if keyword == "exclusiveMinimum":
        return f"must be more than {expected}"
    if keyword == "exclusiveMaximum":
        return f"must be less than {expected}"
    if keyword == "minItems":
        return f"must list at least {_plural(int(expected), 'item')}"
    if keyword == "maxItems":
        return f"may list at most {_plural(int(expected), 'item')}"
    if keyword == "uniqueItems":
        return "lists the same item twice"
    if keyword == "minProperties":
        return f"must have at least {_plural(int(expected), 'entry')}"
    if keyword == "maxProperties":
        return f"may have at most {_plural(int(expected), 'entry')}"
    if keyword == "propertyNames":
        return "has a name that is not allowed"
    return str(error.message)


def _relevant(error: ValidationError) -> ValidationError:
    """For ``nullable``/``anyOf`` failures, the error of the branch that was meant.

    ``anyOf: [{string...}, {type: null}]`` fails as a whole; the useful error is the
    one of the non-null branch (the value was not null, so that branch was meant).
    """
    while error.validator in ("anyOf", "oneOf") and error.context:
        meant = [e for e in error.context if e.validator != "type" or e.validator_value != "null"]
        if not meant:
            break
        found = best_match(meant)
        if found is None:
            break
        error = found
    return error


def path_of(error: ValidationError) -> list[str | int]:
    """The path of the field ``error`` is about (the missing or unknown one if so)."""
    parts: list[str | int] = list(error.absolute_path)
    instance = error.instance
    if error.validator == "required" and isinstance(instance, dict):
        required = error.validator_value if isinstance(error.validator_value, list) else []
        parts.extend([name for name in required if name not in instance][:1])
    elif error.validator == "additionalProperties" and isinstance(instance, dict):
        schema = error.schema if isinstance(error.schema, Mapping) else {}
        known = set(schema.get("properties", {}))
        parts.extend(sorted(name for name in instance if name not in known)[:1])
    return parts


def describe(error: ValidationError, prefix: str = "") -> tuple[str, list[str | int]]:
    """``(detail, path)`` for ``error``: ``hostname must be a DNS name ...`` and its path.

    ``prefix`` names a query or path parameter (the error's path is then inside it).
    """
    error = _relevant(error)
    path = path_of(error)
    name = field_name([prefix, *path] if prefix else path)
    if error.validator == "required":
        detail = f"{name} is required"
    elif error.validator == "additionalProperties":
        detail = f"{name} is not a known field"
    elif not path and not prefix and error.validator == "type":
        detail = f"the body {_type_words(error.validator_value)}"
    else:
        detail = f"{name} {_phrase(error)}"
    if len(detail) > MAX_DETAIL:
        detail = detail[: MAX_DETAIL - 3] + "..."
    return detail, path


def pointer_name(pointer: str) -> str:
    """A JSON pointer (``/parts/1/label``) as people write the field (``parts[1].label``)."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    return field_name(parts)
