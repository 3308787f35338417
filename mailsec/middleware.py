"""Request middleware shared by every app."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequired
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.urls import is_valid_path

from mailsec.api.errors import error_body


class LoginRequiredMiddleware(DjangoLoginRequired):
    """Every page needs a logged-in user; the API authenticates its own requests.

    API views answer 401 in the API's JSON error shape rather than redirecting a script to the
    login form, so they are left to Django REST Framework's authentication and permissions.
    """

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponseBase | None:
        if request.path_info.startswith("/api/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


API_PREFIX = "/api/"
# C0 controls and DEL: no path segment, query parameter or field name takes them.
CONTROL = re.compile("[\x00-\x1f\x7f]")
# In a field's value, tab and line breaks are text (a textarea, a PEM key); the rest is not,
# and NUL in particular ends as a 500 from PostgreSQL. Lone surrogates cannot be stored at all.
VALUE_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
MAX_JSON_DEPTH = 64
# Room for a multipart form's boundaries, headers and small fields around its one file.
MULTIPART_OVERHEAD = 1024 * 1024
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# What a replaced error response keeps: the security middleware's headers and the HTTP ones.
DROPPED_HEADERS = {"content-type", "content-length", "content-disposition", "content-encoding"}
STATUS_ERRORS = {
    400: ("bad_request", "Bad request."),
    401: ("not_authenticated", "Invalid or missing token."),
    403: ("permission_denied", "You do not have permission to perform this action."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "Method not allowed."),
    413: ("too_large", "The request body is too large."),
    500: ("server_error", "Internal server error."),
}


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


class RequestGuardMiddleware:
    """First in MIDDLEWARE: refuses, as a 4xx, the requests that would otherwise end as a 500
    or reach a view in a shape nothing expects, and gives every error under /api/ the API's
    JSON error shape, whichever layer produced it.

    Refused: control characters in the path, a query parameter or a field name, and in a
    field's value (form or JSON) any control other than tab and line breaks, or a lone
    surrogate; JSON nested deeper than MAX_JSON_DEPTH (Python's parser would raise
    RecursionError); too many fields; a body over DATA_UPLOAD_MAX_MEMORY_SIZE (413), which
    DRF's parsers would otherwise read whole without the check Django makes for forms; and a
    path missing its final slash, under /api/ or with a body, which would be redirected
    without its body.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        api = request.path_info.startswith(API_PREFIX)
        refusal = request_refusal(request, api=api)
        if refusal is not None:
            return refusal_response(refusal, api=api)
        response = self.get_response(request)
        if api and response.status_code >= 400 and not _is_json(response):
            return api_error_shape(response)
        return response


def request_refusal(request: HttpRequest, *, api: bool) -> Refusal | None:
    if CONTROL.search(request.path_info):
        return Refusal(400, "invalid", "The path holds a control character.")
    try:
        query = request.GET
    except TooManyFieldsSent:
        return Refusal(400, "too_many_fields", "Too many query parameters.")
    for name, values in query.lists():
        if CONTROL.search(name) or any(CONTROL.search(value) for value in values):
            return Refusal(
                400,
                "invalid",
                "A query parameter holds a control character.",
                {"parameter": CONTROL.sub("?", name)},
            )
    # CommonMiddleware would redirect to the path with its slash, and the client would follow
    # without the body (or, with DEBUG, fail with a 500): refused instead, for any API request
    # and for a page's form post. A page's GET keeps its redirect.
    unsafe = request.method not in ("GET", "HEAD", "OPTIONS", "TRACE")
    if (api or unsafe) and not request.path_info.endswith("/"):
        urlconf = getattr(request, "urlconf", None)
        if not is_valid_path(request.path_info, urlconf) and is_valid_path(
            f"{request.path_info}/", urlconf
        ):
            return Refusal(
                404,
                "not_found",
                "Not found: the path must end with a slash.",
                {"path": f"{request.path}/"},
            )
    return body_refusal(request)


def body_refusal(request: HttpRequest) -> Refusal | None:
    content_type = request.content_type or ""
    too_large = Refusal(
        413,
        "too_large",
        "The request body is too large.",
        {"max_bytes": settings.DATA_UPLOAD_MAX_MEMORY_SIZE},
    )
    if content_type in FORM_TYPES:
        # Uploaded files are not held to DATA_UPLOAD_MAX_MEMORY_SIZE (Django spools them to
        # disk): a multipart body larger than the largest file any endpoint takes (a report, with
        # room for the form around it) is refused before a byte of it is read.
        upload_limit = settings.MAILSEC_REPORT_MAX_MESSAGE_BYTES + MULTIPART_OVERHEAD
        refusal = _length_refusal(
            request,
            Refusal(
                413, "too_large", "The request body is too large.", {"max_bytes": upload_limit}
            ),
            limit=upload_limit,
        )
        if refusal is not None:
            return refusal
        try:
            post = request.POST
        except RequestDataTooBig:
            return too_large
        except (TooManyFieldsSent, TooManyFilesSent):
            return Refusal(400, "too_many_fields", "Too many fields.")
        except MultiPartParserError:
            return Refusal(400, "invalid", "The form data is malformed.")
        for name, values in post.lists():
            if CONTROL.search(name) or any(VALUE_CONTROL.search(value) for value in values):
                return Refusal(
                    400,
                    "invalid",
                    "A field holds a control character.",
                    {"field": CONTROL.sub("?", name)},
                )
        return None
    if not _is_json_type(content_type):
        return _length_refusal(request, too_large)
    try:
        body = request.body
    except RequestDataTooBig:
        return too_large
    try:
        data = json.loads(body)
    except RecursionError:
        return Refusal(400, "invalid", "The JSON is nested too deeply.")
    except ValueError:
        return None  # the parser answers a malformed document itself
    return json_refusal(data)


def json_refusal(data: Any) -> Refusal | None:
    """Walked without recursion: the document may be as deep as the parser allowed."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return Refusal(400, "invalid", "The JSON is nested too deeply.")
        if isinstance(item, str):
            if VALUE_CONTROL.search(item):
                return Refusal(
                    400, "invalid", "A value holds a control character or a lone surrogate."
                )
        elif isinstance(item, dict):
            for key, value in item.items():
                if CONTROL.search(key) or VALUE_CONTROL.search(key):
                    return Refusal(400, "invalid", "A key holds a control character.")
                stack.append((value, depth + 1))
        elif isinstance(item, list):
            stack.extend((value, depth + 1) for value in item)
    return None


def _length_refusal(
    request: HttpRequest, too_large: Refusal, *, limit: int | None = None
) -> Refusal | None:
    if limit is None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return Refusal(400, "invalid", "The Content-Length header is not a number.")
    if limit is not None and length > limit:
        return too_large
    return None


def refusal_response(refusal: Refusal, *, api: bool) -> HttpResponse:
    response: HttpResponse
    if api:
        body = error_body(refusal.code, refusal.message, refusal.details)
        response = JsonResponse(body, status=refusal.status)
    else:
        response = HttpResponse(
            refusal.message, status=refusal.status, content_type="text/plain; charset=utf-8"
        )
    # Refused before the security middleware saw the request.
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def api_error_shape(response: HttpResponseBase) -> JsonResponse:
    """An error some other layer answered as a page (Django's 400 for a bad Host header or a
    form with too many fields, the docs' HTML), reshaped; its other headers are kept."""
    code, message = STATUS_ERRORS.get(
        response.status_code, ("error", response.reason_phrase or "Request failed.")
    )
    shaped = JsonResponse(error_body(code, message), status=response.status_code)
    for name, value in response.items():
        if name.lower() not in DROPPED_HEADERS:
            shaped.headers[name] = value
    return shaped


def _is_json_type(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


def _is_json(response: HttpResponseBase) -> bool:
    content_type = response.get("Content-Type", "").split(";")[0].strip()
    return content_type == "application/json"
