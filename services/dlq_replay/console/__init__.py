"""The operator console (``/console``) and the merchant portal (``/portal``), served by the
admin service as server-rendered, autoescaped pages with one small script of our own.

Security model (see :mod:`.guard`): a session cookie (HttpOnly, SameSite=Strict, Secure over
HTTPS, expiring) backed by a ``web_sessions`` row; a per-session CSRF token on every state
change; a strict Content-Security-Policy (no inline script, nothing from another origin).
Every action calls the same functions as the admin API (or, for endpoints, as the ingest API)
and writes the same audit rows, under the operator's name or ``portal:<account>``.
"""
