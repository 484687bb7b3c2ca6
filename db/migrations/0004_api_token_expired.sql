-- The expiry sweep marks API tokens past their time, as it does enrollment tokens
-- (authentication already refuses them by expires_at; the mark is for operators and audit).
ALTER TABLE api_tokens ADD COLUMN expired boolean NOT NULL DEFAULT false;
