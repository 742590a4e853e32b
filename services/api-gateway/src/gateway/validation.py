"""Turning request bodies into validated models, and every way that can fail into a 4xx."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from calls_events import E164
from calls_platform.http import json_error
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

M = TypeVar("M", bound=BaseModel)


class BadRequest(Exception):
    """Carries the JSON error response to send."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


def _message(err: ErrorDetails) -> str:
    if err["type"] == "string_pattern_mismatch" and (err.get("ctx") or {}).get("pattern") == E164:
        return "must be an E.164 phone number, e.g. +14155550100"
    return err["msg"]


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    details = []
    for err in exc.errors(include_url=False):
        detail: dict[str, Any] = {
            "field": ".".join(str(p) for p in err["loc"]) or "body",
            "message": _message(err),
        }
        if err["type"] not in ("missing", "extra_forbidden") and isinstance(
            err.get("input"), str | int | float | bool
        ):
            detail["value"] = err["input"]
        details.append(detail)
    return details


def unprocessable(message: str, field: str, detail: str) -> BadRequest:
    return BadRequest(
        json_error(422, "validation_error", message, [{"field": field, "message": detail}])
    )


def _path_to_nul(document: Any) -> str | None:
    """Where in a decoded JSON document a string (or an object key) holds a NUL character.
    Iterative: a document nested as deep as the decoder allows must not overflow the stack."""
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return path or "body"
        elif isinstance(value, dict):
            for key, item in value.items():
                here = f"{path}.{key}" if path else str(key)
                if "\x00" in key:
                    return here.replace("\x00", "\\u0000")
                stack.append((here, item))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}" if path else str(i), item) for i, item in enumerate(value))
    return None


async def parse_body(request: web.Request, model: type[M]) -> M:
    if request.content_type != "application/json":
        raise BadRequest(
            json_error(415, "unsupported_media_type", "Content-Type must be application/json")
        )
    raw = await request.read()  # aiohttp answers 413 past client_max_size
    try:
        data = json.loads(raw)
    except ValueError as exc:  # bad syntax, bad UTF-8, or an integer past int_max_str_digits
        raise BadRequest(
            json_error(400, "malformed_json", f"body is not valid JSON: {exc}")
        ) from None
    except RecursionError:  # the decoder recurses per nesting level: "[[[[…" must not be a 500
        raise BadRequest(json_error(400, "malformed_json", "body is nested too deeply")) from None
    if not isinstance(data, dict):
        raise unprocessable("body must be a JSON object", "body", "must be a JSON object")
    nul = _path_to_nul(data)
    if nul is not None:  # PostgreSQL stores no NUL in text or jsonb: refuse it here, not with a 500
        raise unprocessable("invalid request body", nul, "must not contain NUL (U+0000)")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(
            json_error(422, "validation_error", "invalid request body", validation_details(exc))
        ) from None
