"""The /v1 server APIs: autointerp (and, later, inference), guarded by X-SECRET-KEY when INTERPEDIA_SECRET is set."""
