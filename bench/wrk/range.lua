-- One random Range per request: bytes=START-(START+LEN-1) inside the file.
-- Arguments: PATH FILE_SIZE RANGE_LEN. Counts responses that are not 206
-- (bad_status) and 206 responses whose body is not RANGE_LEN bytes (bad_length).
COUNTERS = {"bad_status", "bad_length"}

local path, file_size, range_len

function init(args)
   path = args[1]
   file_size = tonumber(args[2])
   range_len = tonumber(args[3])
   bad_status = 0
   bad_length = 0
   math.randomseed(20240601)
end

function request()
   local first = math.random(0, file_size - range_len)
   local header = string.format("bytes=%d-%d", first, first + range_len - 1)
   return wrk.format("GET", path, {["Range"] = header})
end

function response(status, headers, body)
   if status ~= 206 then
      bad_status = bad_status + 1
   elseif #body ~= range_len then
      bad_length = bad_length + 1
   end
end
