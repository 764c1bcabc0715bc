"""`ferryman get URL`: a resumable, verified download client (decisions/0029).

    naming.py    URL -> the file it is saved as, never outside the directory unless -o says so
    segments.py  the byte ranges still to fetch, split for parallel connections (pure)
    sidecar.py   PATH.part.json: what the .part file holds and of which version
    digests.py   the digests a download is checked against, and the file's own
    request.py   one GET: connection, token, redirects, Range and If-Range
    retry.py     when to try again and how long to wait (pure)
    ratelimit.py --limit-rate, shared by the connections
    start.py     a fresh download's first GET, and the version it describes
    partfile.py  PATH.part opened, locked and sized
    segment.py   one segment fetched into the .part file, retried until done
    command.py   the command: arguments, the run, verification, exit statuses

Only cli.py imports it; it imports the pure http/ modules and nothing of the server.
"""
