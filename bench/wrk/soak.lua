-- The memory soak's requests (bench/soak.py), for one wrk thread (-t1).
-- Arguments: LIMIT, then one per step: a first line "STATUS METHOD TARGET",
-- then "Name: value" header lines, and "@body: N" for a request body of N
-- bytes. Steps go in turn, one per answer: request() sends the step that
-- follows the last answer's, and each answer is checked against it. That is
-- exact with one connection (counting requests instead would drift: wrk
-- calls request() once at the start and drops what it returns), and with
-- several when every step expects the same status (bench/soak_kinds.py
-- allows nothing else).
-- wrk runs for a duration: at the LIMITth response the thread stops and
-- prints SOAK_LIMIT, and bench/soak.py ends the run with SIGINT. At the end,
-- one line: SOAK_RESULT {"responses":..,"mismatched":..,"errors":{..},"statuses":{"404":..}}
local steps = {}
local limit
local answered = 0
local threads = {}

-- Globals, read across threads by done() with thread:get().
statuses = {}
mismatched = 0

local function parse_step(text)
   local step = {headers = {}}
   local first = true
   for line in string.gmatch(text, "[^\n]+") do
      if first then
         local status, method, target = string.match(line, "^(%d+) (%S+) (%S+)$")
         step.status, step.method, step.target = tonumber(status), method, target
         first = false
      else
         local name, value = string.match(line, "^([^:]+): (.*)$")
         if name == "@body" then
            step.body = string.rep("x", tonumber(value))
         else
            step.headers[name] = value
         end
      end
   end
   step.request = wrk.format(step.method, step.target, step.headers, step.body)
   return step
end

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   limit = tonumber(args[1])
   for i = 2, #args do
      steps[i - 1] = parse_step(args[i])
   end
end

local function current()
   return steps[answered % #steps + 1]
end

function request()
   return current().request
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   if status ~= current().status then
      mismatched = mismatched + 1
   end
   answered = answered + 1
   if answered == limit then
      wrk.thread:stop()
      io.write("SOAK_LIMIT\n")
      io.flush()
   end
end

function done(summary, latency, requests)
   local counts, responses, wrong = {}, 0, 0
   for _, thread in ipairs(threads) do
      for status, n in pairs(thread:get("statuses") or {}) do
         counts[status] = (counts[status] or 0) + n
         responses = responses + n
      end
      wrong = wrong + (thread:get("mismatched") or 0)
   end
   local parts = {}
   for status, n in pairs(counts) do
      table.insert(parts, string.format('"%d":%d', status, n))
   end
   local e = summary.errors
   io.write(string.format(
      'SOAK_RESULT {"responses":%d,"mismatched":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"statuses":{%s}}\n',
      responses, wrong, e.connect, e.read, e.write, e.timeout, table.concat(parts, ",")))
end
