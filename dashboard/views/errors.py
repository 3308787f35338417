"""The 404 and 500 handlers: JSON in the API's error shape under /api/, a page elsewhere."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from mailsec.api.errors import api_not_found, api_server_error


@login_not_required
def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith("/api/"):
        response: HttpResponse | JsonResponse = api_not_found(request, exception)
        return response
    return render(request, "404.html", status=404)


@login_not_required
def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        response: HttpResponse | JsonResponse = api_server_error(request)
        return response
    return render(request, "500.html", status=500)
