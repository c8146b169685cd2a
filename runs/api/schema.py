"""What /api/schema/ says beyond what drf-spectacular infers from the views.

Every API failure has one shape (runs.api.errors), and clients (the SDK, the
CLI, generated clients, schemathesis in tests/test_fuzz_api.py) need the
statuses an operation can answer documented, not only its success. One rule
here, instead of an error list repeated on each view.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="what went wrong and how to fix it")
    code = serializers.CharField(help_text="machine-readable: invalid, not_found, illegal_transition, ...")
    errors = serializers.DictField(required=False, help_text="messages per field, for invalid input")
    current = serializers.CharField(required=False, help_text="an illegal transition's current status")
    requested = serializers.CharField(required=False, help_text="an illegal transition's requested status")


_DESCRIPTIONS = {
    "400": "Invalid input or address: `detail` names the problem and the limit or fix; `errors` the field.",
    "401": "No token, or an invalid, revoked or ended run's token.",
    "403": "Not allowed: a run token outside its run's branch, or a runner report from another caller.",
    "404": "Does not exist or is not visible to the caller.",
    "409": "Conflicts with the current state: the run lifecycle, an immutable property, a name in use.",
    "413": "The request body is past a limit (STUDIO_MAX_REQUEST_BYTES, snapshot or file limits).",
    "415": "The request body's content type is not one this operation accepts.",
}
_WRITES = ("POST", "PUT", "PATCH", "DELETE")


class StudioAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema, plus the error responses each operation can give."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in self._error_codes():
            if code not in responses:
                response = self._get_response_for_code(ErrorSerializer, code, ["application/json"], direction)
                response["description"] = _DESCRIPTIONS[code]
                responses[code] = response
        return responses

    def _get_parameters(self):
        parameters = super()._get_parameters()
        for parameter in parameters:
            # The views read an empty optional query value (`?page_size=`) as not given.
            if parameter.get("in") == "query" and not parameter.get("required"):
                parameter["allowEmptyValue"] = True
        return parameters

    def _error_codes(self) -> list[str]:
        # Any address can be refused before the view: a NUL in it, or more query parameters than
        # DATA_UPLOAD_MAX_NUMBER_FIELDS (studio.request_limits).
        codes = ["400"]
        authenticated = bool(self.view.get_permissions())
        if authenticated:
            codes += ["401", "403"]
        if "{" in self.path:
            codes.append("404")
        if self.method in _WRITES:
            codes += ["409", "413", "415"]
        return codes


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "runs.auth.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>` (or `Bearer <key>`): a user token rs_… or a run's token rt_…",
        }
