"""The rate limiting binding's counters (docs/compatibility.md, ## Rate limiting)."""
