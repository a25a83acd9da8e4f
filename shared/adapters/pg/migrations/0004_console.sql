-- Operator console and merchant portal (admin service): browser sessions, one-time portal
-- links, and the indexes their pages read through.

-- A signed-in browser: an operator on /console or a merchant on /portal. The cookie holds a
-- random value; only its SHA-256 is stored, so a database dump cannot be replayed as a cookie.
CREATE TABLE web_sessions (
    id_hash     bytea PRIMARY KEY,                            -- sha256 of the cookie value
    kind        text NOT NULL CHECK (kind IN ('console', 'portal')),
    principal   text NOT NULL,                                -- operator name, or account id
    csrf_token  text NOT NULL,                                -- every state change must echo it
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX web_sessions_expires_idx ON web_sessions (expires_at);

-- One-time portal URLs made by POST /admin/v1/portal-sessions; used_at is set on first use.
CREATE TABLE portal_links (
    token_hash  bytea PRIMARY KEY,                            -- sha256 of the URL's token
    account_id  text NOT NULL,
    created_by  text NOT NULL,                                -- operator name
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,                         -- the link and its session end here
    used_at     timestamptz
);
CREATE INDEX portal_links_expires_idx ON portal_links (expires_at);

-- Console: dead letters by event id; portal: an endpoint's deliveries, newest first.
CREATE INDEX dead_letters_event_idx ON dead_letters (event_id);
CREATE INDEX deliveries_endpoint_idx ON deliveries (endpoint_id, id DESC);
