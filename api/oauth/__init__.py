"""The SMART on FHIR authorisation server's HTTP edge (the logic is in `consent/`).

https://hl7.org/fhir/smart-app-launch/ : discovery (`/.well-known/smart-configuration`),
`/oauth/authorize` (sign-in and consent page), `/oauth/token`, `/oauth/introspect`
(RFC 7662), `/oauth/revoke` (RFC 7009), `/oauth/register` (RFC 7591), `/oauth/jwks`, and
`/oauth/launch` where an EHR records the context of an EHR launch.
"""

from api.oauth.context import caller_from_request
from api.oauth.responses import install
from api.oauth.routes import router

__all__ = ["install", "caller_from_request", "router"]
