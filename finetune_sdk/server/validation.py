"""Request-validation errors phrased the way the real APIs phrase them.

- a missing field: ``Missing required parameter: 'model'.``
- an unknown chat argument: ``Unrecognized request argument supplied: foo``
- anything else: ``invalid n_epochs: 100, input should be less than or equal to 50``
  (the style of the fine-tuning API: "invalid nepochs: 2, extra inputs are not permitted")
- unparseable JSON: ``We could not parse the JSON body of your request. ...``
"""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError

__all__ = ["validation_message"]

_JSON_HINT = ("We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
              "HTTP library correctly. The API expects a JSON payload, but what was sent was not valid JSON.)")


def _real_path(loc: tuple[Any, ...], body: Any) -> list[str]:
    """Drop pydantic's union-member tags from a location, keeping only real keys and indexes."""
    parts: list[str] = []
    node = body
    for item in loc:
        if isinstance(node, dict) and isinstance(item, str) and item in node:
            node = node[item]
            parts.append(item)
        elif isinstance(node, list) and isinstance(item, int) and 0 <= item < len(node):
            node = node[item]
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif not isinstance(node, (dict, list)) or isinstance(item, int):
            continue
        elif isinstance(node, dict) and isinstance(item, str) and item.isidentifier():
            parts.append(item)  # a missing key
            node = None
    return parts


def _pick(errors: list[dict[str, Any]]) -> dict[str, Any]:
    # Unions report one error per member; the literal 'auto' member is the least informative.
    for err in errors:
        if err.get("type") not in ("literal_error", "is_instance_of", "none_required"):
            return err
    return errors[0]


def validation_message(exc: RequestValidationError, path: str) -> tuple[str, str | None]:
    errors = list(exc.errors())
    if not errors:
        return "Invalid request.", None
    err = _pick(errors)
    kind = err.get("type", "")
    loc = tuple(err.get("loc") or ())
    where = loc[0] if loc else "body"
    if kind == "json_invalid":
        return _JSON_HINT, None
    if where == "body":
        names = _real_path(loc[1:], exc.body if isinstance(exc.body, (dict, list)) else {})
        if not names and kind == "missing" and len(loc) <= 1:
            return "The request body is missing or empty; send a JSON object.", None
    else:
        names = [str(x) for x in loc[1:]]
    name = ".".join(names) or str(where)
    leaf = names[-1] if names else name
    if kind == "missing":
        return f"Missing required parameter: '{name}'.", name
    if kind == "extra_forbidden":
        if path.endswith("/chat/completions") and len(names) == 1:
            return f"Unrecognized request argument supplied: {leaf}", name
        return f"invalid {leaf}: {_short(err.get('input'))}, extra inputs are not permitted", name
    msg = str(err.get("msg", "invalid value"))
    msg = msg[:1].lower() + msg[1:]
    if msg.startswith("value error, "):
        msg = msg[len("value error, "):]
    return f"invalid {leaf}: {_short(err.get('input'))}, {msg}", name


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
