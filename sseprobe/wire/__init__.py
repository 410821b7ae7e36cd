"""Wire: what one session sends and reads: HTTP/1.1 transport (h1, http), the sans-IO SSE decoder (sse),
what each flow means (flows) and one session end to end (session)."""
