"""Model records to response JSON, and request JSON onto records (PUT/PATCH).

Two helpers every resource needs, so that they behave the same everywhere:

- :func:`record_json` renders a record for a response, leaving out every field
  declared with ``repr=False`` in :mod:`oauthproxy.model` (that is how the model
  marks secrets: token digests, private keys), plus any ``exclude``-d ones;
- :func:`merged` applies the fields a PATCH (or PUT) body gives onto a record and
  leaves the others alone, converting JSON lists and objects to the model's tuples
  and nested records.  Validate the body with its schema first: this only converts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import attrs
from cattrs import BaseValidationError, Converter

from oauthproxy.errors import InvalidInput

T = TypeVar("T")

_converter = Converter()


def record_json(record: Any, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """``record`` as a JSON object without secret (``repr=False``) or excluded fields."""
    hidden = set(exclude)

    def shown(attribute: attrs.Attribute[Any], value: object) -> bool:
        return bool(attribute.repr) and attribute.name not in hidden

    plain: dict[str, Any] = _plain(attrs.asdict(record, filter=shown))
    return plain


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists (what JSON and JSON Schema's ``array`` expect)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def merged(record: T, changes: Mapping[str, Any]) -> T:
    """A copy of ``record`` with the fields in ``changes`` (JSON values) replaced."""
    kind: Any = type(record)
    unknown = set(changes) - {field.name for field in attrs.fields(kind)}
    if unknown:
        raise InvalidInput("unknown field", field="/" + sorted(unknown)[0])
    state = _converter.unstructure(record)
    state.update(changes)
    try:
        result: T = _converter.structure(state, kind)
    except BaseValidationError:
        raise InvalidInput("a field has the wrong type") from None
    return result
