"""Faust's broker credentials, from the same settings as every other client.

faust-streaming 0.15 passes ``faust.SASLCredentials(mechanism=...)`` through to aiokafka intact
(``credentials_to_aiokafka_auth`` in ``faust/transport/drivers/aiokafka.py`` copies
``credentials.mechanism.value`` for the worker's consumer, its producer and the topic admin), so
SCRAM needs no work-around; tests/unit/test_security.py checks that this stays so. The TLS context
is the one :func:`disruptfeed._security.ssl_context` builds for every aiokafka client.
"""

from __future__ import annotations

__all__ = ["broker_credentials"]

import faust
from faust.types.auth import CredentialsT

from disruptfeed._security import aiokafka_security
from disruptfeed.settings import Settings


def broker_credentials(settings: Settings) -> CredentialsT | None:
    """``faust.App(broker_credentials=...)`` for the settings; None for ``PLAINTEXT``.

    Raises:
        ConfigurationError: as :meth:`Settings.client_kwargs` does.
    """
    auth = aiokafka_security(settings)  # the same checks and context as every aiokafka client
    context = auth.get("ssl_context")
    if "sasl_mechanism" in auth:
        return faust.SASLCredentials(
            username=auth["sasl_plain_username"],
            password=auth["sasl_plain_password"],
            mechanism=auth["sasl_mechanism"],
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None
