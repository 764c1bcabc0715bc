-- PARTS disjoint ranges of PART_LEN bytes per request, one in each equal
-- slice of the file, ascending: Range: bytes=a-b,c-d,e-f.
-- Arguments: PATH FILE_SIZE PART_LEN PARTS. Counts responses that are not 206
-- (bad_status), not multipart/byteranges (bad_type), or whose body is shorter
-- than the parts it must carry (bad_length).
COUNTERS = {"bad_status", "bad_type", "bad_length"}

local path, file_size, part_len, parts, slice

function init(args)
   path = args[1]
   file_size = tonumber(args[2])
   part_len = tonumber(args[3])
   parts = tonumber(args[4])
   slice = math.floor(file_size / parts)
   bad_status = 0
   bad_type = 0
   bad_length = 0
   math.randomseed(20240601)
end

function request()
   local specs = {}
   for i = 0, parts - 1 do
      -- Ends at least one byte before the next slice: never adjacent ranges.
      local first = i * slice + math.random(0, slice - part_len - 1)
      specs[#specs + 1] = string.format("%d-%d", first, first + part_len - 1)
   end
   return wrk.format("GET", path, {["Range"] = "bytes=" .. table.concat(specs, ",")})
end

local function content_type(headers)
   for name, value in pairs(headers) do
      if string.lower(name) == "content-type" then
         return string.lower(value)
      end
   end
   return ""
end

function response(status, headers, body)
   if status ~= 206 then
      bad_status = bad_status + 1
   elseif string.sub(content_type(headers), 1, 20) ~= "multipart/byteranges" then
      bad_type = bad_type + 1
   elseif #body < parts * part_len then
      bad_length = bad_length + 1
   end
end
