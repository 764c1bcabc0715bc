-- GET of the URL given to wrk with Accept-Encoding: gzip; counts answers that were not
-- gzip-coded (a server that sent the file as it is would otherwise look fast).
COUNTERS = {"not_gzip"}
wrk.headers["Accept-Encoding"] = "gzip"

local not_gzip = 0

function response(status, headers, body)
   local coding = headers["Content-Encoding"] or headers["content-encoding"]
   if coding ~= "gzip" then
      not_gzip = not_gzip + 1
      wrk.thread:set("not_gzip", not_gzip)
   end
end
