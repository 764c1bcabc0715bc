-- Plain GET of the URL given to wrk; no per-response work in Lua.
COUNTERS = {}
