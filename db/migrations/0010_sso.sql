-- Single sign-on (OpenID Connect). A dashboard sign-in begun: its state, nonce and PKCE
-- verifier, redeemed at most once (the callback deletes the row it uses).
CREATE TABLE sso_logins (
    state      text PRIMARY KEY,
    nonce      text NOT NULL,
    verifier   text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- Nonces and ID tokens already spent (their SHA-256): a second use is a replay. Each is kept
-- until the ID token it came with has expired, when it could not be used anyway.
CREATE TABLE sso_spent (
    digest     bytea PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX sso_spent_expires ON sso_spent (expires_at);
