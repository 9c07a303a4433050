"""tfy-audit: TrueFoundry audit logs into a warehouse you own."""
