-- PUT of SIZE bytes to a new key per request, PREFIX/<n>.bin, with a bearer
-- token. Arguments: PREFIX SIZE TOKEN. One wrk thread (keys are numbered per
-- thread). Counts answers other than 201 (not_created): every key is new, so
-- each PUT must create it.
COUNTERS = {"not_created"}

local prefix, body, token
local n = 0

function init(args)
   prefix = args[1]
   body = string.rep("f", tonumber(args[2]))
   token = args[3]
   not_created = 0
end

function request()
   n = n + 1
   return wrk.format("PUT", string.format("%s/%d.bin", prefix, n),
                     {["Authorization"] = "Bearer " .. token}, body)
end

function response(status, headers, body)
   if status ~= 201 then
      not_created = not_created + 1
   end
end
