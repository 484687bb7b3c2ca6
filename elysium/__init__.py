"""Elysium's shared domain: settings, errors, WireGuard keys, address plans and PKI."""
