-- Appended to every workload script by bench/wrkrun.py: at the end of the run,
-- print one machine-readable line (WRK_RESULT {json}) with wrk's summary and
-- the workload's own counters (names listed in the global COUNTERS).
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function done(summary, latency, requests)
   local counters = {}
   for _, name in ipairs(COUNTERS or {}) do
      local total = 0
      for _, t in ipairs(threads) do
         total = total + (t:get(name) or 0)
      end
      table.insert(counters, string.format('"%s":%d', name, total))
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_RESULT {"requests":%d,"bytes":%d,"duration_us":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p99":%d,"max":%d},"counters":{%s}}\n',
      summary.requests, summary.bytes, summary.duration,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.max,
      table.concat(counters, ",")))
end
