"""The keyword arguments that make an aiokafka client honour :class:`KafkaSecurity`.

Every producer, consumer and admin client Postwire creates passes ``**client_options(security)``,
so one set of variables secures all of them.
"""

from __future__ import annotations

import ssl
from typing import Any

from shared.config_kafka import KafkaSecurity
from shared.core.errors import ConfigError


def tls_context(security: KafkaSecurity) -> ssl.SSLContext:
    """A client TLS context: the CA file (or the system trust store), hostname checks on, and
    the client certificate for mutual TLS when one is configured.

    Raises ConfigError naming the variable whose file cannot be loaded."""
    try:
        return ssl.create_default_context(cafile=security.ssl_ca_file)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"POSTWIRE_KAFKA_SSL_CA_FILE={security.ssl_ca_file!r} is not valid: "
                          f"cannot load it as PEM CA certificates ({exc})") from exc


def _with_client_cert(context: ssl.SSLContext, security: KafkaSecurity) -> ssl.SSLContext:
    if security.ssl_cert_file is None or security.ssl_key_file is None:
        return context
    try:
        context.load_cert_chain(security.ssl_cert_file, security.ssl_key_file,
                                security.ssl_key_password)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"POSTWIRE_KAFKA_SSL_CERT_FILE={security.ssl_cert_file!r} is not "
                          f"valid: cannot load it with POSTWIRE_KAFKA_SSL_KEY_FILE "
                          f"(and POSTWIRE_KAFKA_SSL_KEY_PASSWORD) ({exc})") from exc
    return context


def client_options(security: KafkaSecurity) -> dict[str, Any]:
    """aiokafka keyword arguments (``security_protocol``, ``ssl_context``, ``sasl_*``).

    Raises ConfigError when a TLS file cannot be loaded; cheap enough to call per client."""
    options: dict[str, Any] = {"security_protocol": security.protocol}
    if security.uses_tls:
        options["ssl_context"] = _with_client_cert(tls_context(security), security)
    if security.uses_sasl:
        options["sasl_mechanism"] = security.sasl_mechanism
        options["sasl_plain_username"] = security.sasl_username
        options["sasl_plain_password"] = security.sasl_password
    return options
